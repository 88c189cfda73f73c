"""Benchmark: throughput of the paper-scale training loop (lpft.scale.finetune), and what it implies for one table row.

    .venv/bin/python benchmarks/finetune.py [--row cifar-stl|imagenet] [--device cpu|cuda] [--arch resnet50]
                                              [--width W] [--image-size 224] [--steps 20] [--out FILE.json]

On random-weight backbones and random uint8 images (no data or weights needed), it times in one process one training
step (forward, backward, SGD) and evaluation batches of 256, in the baseline setting (fp32, default layout) and, on a
GPU, the one the runs use (bf16 autocast + channels-last):

- ``--row cifar-stl`` (the default): the MoCo-v2 ResNet-50 (``--arch``, ``--width``), batches of 64 at ``--image-size``
  from 32-px stored images (CIFAR's case, resized on the device), plus the same with BREEDS' RandomResizedCrop from
  256-px images;
- ``--row imagenet``: CLIP's ViT-B/16 image tower (``--width`` shrinks it for smoke tests) and a 1000-way head,
  batches of 128 from images stored at the input size (no augmentation).

It prints images per second and each setting's ratio to the fp32 baseline measured in the same run, and projects the
row's time from the faster setting (:data:`ROWS`): LP's feature pass over every image, then FT and LP-FT at one
selected learning rate and one seed, each over the paper's epochs with an ID-val pass after every epoch and a final
evaluation; and the paper's whole sweep (3 seeds × (LP + every FT and LP-FT learning rate of its grid)). The logistic-
regression C sweep (CIFAR) runs on the CPU and ImageNet's SGD probe trains on cached features; neither is included.
``--out`` writes the measurements with the machine, versions and git revision as JSON, atomically.
"""
import argparse
import datetime as dt
import json
import os
import platform
import time
from dataclasses import dataclass

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lpft.scale import backbones, clip, finetune, imagedata, transforms  # noqa: E402
from lpft.task import Classifier  # noqa: E402
from lpft.records import atomic_write_text, environment, git_revision  # noqa: E402
from lpft.scale.experiments import EXPERIMENTS  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One table row's image counts and schedule: ID train, ID-val (passed over after every epoch), the final
    evaluation sets (ID test and OOD; an ID-val that is the ID test set is counted in both), epochs, and how many
    fine-tuning runs the paper's sweep has per seed (FT and LP-FT learning rates)."""
    title: str
    n_train: int
    n_val: int
    n_eval: int
    epochs: int
    runs_per_seed: int
    seeds: int = 3


def row_of(experiment: str, title: str, n_train: int, n_val: int, n_eval: int) -> Row:
    """A row with its image counts (reference 3.1) and the epochs and grids of ``EXPERIMENTS[experiment]``'s paper
    settings (:mod:`lpft.scale.experiments`)."""
    spec = EXPERIMENTS[experiment].paper
    return Row(title, n_train, n_val, n_eval, spec.epochs, len(spec.ft_lrs) + len(spec.lpft_lrs))


ROWS = {
    # CIFAR-10 -> STL-10: 50,000 train, CIFAR-10 test (10,000) as ID-val and ID test, 7,200 STL-10 test (monkey
    # dropped) + 2,000 CIFAR-10.1
    "cifar-stl": row_of("cifar-stl", "CIFAR-10 -> STL-10", 50_000, 10_000, 10_000 + 7_200 + 2_000),
    # ImageNet -> V2 / R / Sketch / A: 1,281,167 train, ImageNet val (50,000) as ID-val and ID test, 10,000 V2
    # (matched frequency), 30,000 R, 50,889 Sketch, 7,500 A
    "imagenet": row_of("imagenet", "ImageNet -> V2 / R / Sketch / A", 1_281_167, 50_000,
                       50_000 + 10_000 + 30_000 + 50_889 + 7_500),
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def per_second(fn, n_items: int, steps: int, device: str) -> float:
    """Items per second of ``fn`` (called ``steps`` times after two warm-up calls)."""
    for _ in range(2):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return n_items * steps / (time.perf_counter() - start)


def measure(rt: finetune.Runtime, model: torch.nn.Module, stored: int, steps: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (rt.batch_size, 3, stored, stored), dtype=torch.uint8, generator=g)
    y = torch.randint(0, model.head.out_features, (rt.batch_size,), generator=g).to(rt.device)
    x_eval = torch.randint(0, 256, (rt.eval_batch_size, 3, stored, stored), dtype=torch.uint8, generator=g)
    rt.place(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    boxes = rt.crops(imagedata.ImageSet(x, y.cpu()), transforms.augmentation_generator(0, 1))

    def train_step():
        model.train()
        with rt.autocast():
            loss = F.cross_entropy(model(rt.augmented(x, boxes)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step():
        model.eval()
        with rt.autocast():
            model(rt.inputs(x_eval))

    return {"train_images_per_s": per_second(train_step, rt.batch_size, steps, rt.device),
            "eval_images_per_s": per_second(eval_step, rt.eval_batch_size, max(steps // 2, 1), rt.device)}


def projected_seconds(m: dict, row: Row = ROWS["cifar-stl"]) -> dict:
    """From the measured throughputs: LP's feature pass, one fine-tuning run, the row (LP, then FT and LP-FT at one
    learning rate and seed) and the paper's whole sweep (``row.seeds`` × (LP + ``row.runs_per_seed`` runs))."""
    lp = (row.n_train + row.n_val + row.n_eval) / m["eval_images_per_s"]
    run = row.epochs * (row.n_train / m["train_images_per_s"] + row.n_val / m["eval_images_per_s"]) + \
        row.n_eval / m["eval_images_per_s"]
    return {"lp": lp, "run": run, "row": lp + 2 * run, "sweep": row.seeds * (lp + row.runs_per_seed * run)}


def model_for(row: str, args) -> torch.nn.Module:
    if row == "imagenet":
        return Classifier(clip.build("ViT-B-16", width=args.width, image_size=args.image_size), 1000)
    return Classifier(backbones.ResNet(args.arch, 64 if args.width is None else args.width), 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", default="cifar-stl", choices=list(ROWS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="resnet50", choices=list(backbones.ARCHS), help="the ResNet (cifar-stl)")
    parser.add_argument("--width", type=int, default=None, help="shrink the backbone (default: published width)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    settings = {"fp32": dict(precision="fp32", channels_last=False)}
    if args.device == "cuda":
        settings["bf16 + channels-last"] = dict(precision="bf16", channels_last=True)
    if args.row == "imagenet":
        crop = {"ImageNet (stored at the input size)": dict(stored=args.image_size, augment="none",
                                                            centre_crop=False)}
    else:
        crop = {"CIFAR (resize 32 px)": dict(stored=32, augment="none", centre_crop=False),
                "BREEDS (random-resized-crop from 256 px)": dict(stored=256, augment="random-resized-crop",
                                                                 centre_crop=True)}
    batch = EXPERIMENTS[args.row].paper.batch_size
    rows = []
    for data, c in crop.items():
        for name, options in settings.items():
            rt = finetune.Runtime(device=args.device, image_size=args.image_size, augment=c["augment"],
                                    centre_crop=c["centre_crop"], batch_size=batch, **options)
            model = model_for(args.row, args)
            rows.append({"data": data, "setting": name, **measure(rt, model, c["stored"], args.steps)})
            del model
    base = {r["data"]: r for r in rows if r["setting"] == "fp32"}
    shape = "CLIP ViT-B/16" if args.row == "imagenet" else args.arch
    print(f"{shape} (width {args.width or 'as published'}) at {args.image_size} px, batch {batch}, on {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if args.device == 'cuda' else ''}, {args.threads} thread(s)")
    for r in rows:
        b = base[r["data"]]
        r["train_ratio_to_fp32"] = r["train_images_per_s"] / b["train_images_per_s"]
        r["eval_ratio_to_fp32"] = r["eval_images_per_s"] / b["eval_images_per_s"]
        print(f"  {r['data']:42s} {r['setting']:22s} train {r['train_images_per_s']:9.1f} img/s "
              f"(x{r['train_ratio_to_fp32']:.2f})  eval {r['eval_images_per_s']:9.1f} img/s "
              f"(x{r['eval_ratio_to_fp32']:.2f})")
    row = ROWS[args.row]
    best = max((r for r in rows if r["data"] == next(iter(crop))), key=lambda r: r["train_images_per_s"])
    seconds = projected_seconds(best, row)
    print(f"projected {row.title} row (LP features, FT and LP-FT at one lr, one seed; {best['setting']}): "
          f"{seconds['row'] / 60:.1f} min; the paper's sweep ({row.seeds} seeds x (LP + {row.runs_per_seed} runs)): "
          f"{seconds['sweep'] / 3600:.1f} h")
    if args.out:
        result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "machine": {"platform": platform.platform(), "processor": platform.processor(),
                              "cpu_count": os.cpu_count(), "threads": args.threads, "device": args.device,
                              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None},
                  "row": args.row, "arch": shape, "width": args.width, "image_size": args.image_size,
                  "batch_size": batch, "steps": args.steps, "rows": rows,
                  "projected_row_minutes": seconds["row"] / 60, "projected_sweep_hours": seconds["sweep"] / 3600,
                  "environment": environment(), "git_revision": git_revision()}
        atomic_write_text(args.out, json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

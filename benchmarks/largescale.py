"""Benchmark: throughput of the paper-scale training loop (lpft.largescale), and what it implies for one table row.

    .venv/bin/python benchmarks/largescale.py [--device cpu|cuda] [--arch resnet50] [--image-size 224]
                                              [--steps 20] [--out FILE.json]

On random-weight backbones and random uint8 images (no data or weights needed), it times in one process:

- one FT step (forward, backward, SGD) on a batch of 64 at ``--image-size`` from 32-px stored images (CIFAR's case,
  resized on the device), in the baseline setting (fp32, default layout) and, on a GPU, the one the runs use (bf16
  autocast + channels-last), plus the same with BREEDS' RandomResizedCrop from 256-px images;
- evaluation (features / accuracy) on batches of 256 in both settings.

It prints images per second and each setting's ratio to the fp32 baseline measured in the same run, and projects the
time of the CIFAR-10 -> STL-10 row of Table 1 at one selected learning rate and one seed (the issue's budget: under one
hour on one GPU): LP's feature extraction over all 69,000 images, then FT and LP-FT, each 20 epochs over 45,000
training images with an ID-val pass over 5,000 after every epoch, and a final evaluation; the logistic-regression C
sweep runs on the CPU and is not included. ``--out`` writes the measurements with the machine, versions and git
revision as JSON, atomically.
"""
import argparse
import datetime as dt
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lpft import backbones, imagedata, largescale  # noqa: E402
from lpft.execute import atomic_write_text, environment, git_revision  # noqa: E402

# the CIFAR-10 -> STL-10 row: 45,000 train + 5,000 ID-val (CIFAR-10 train), 10,000 ID test, 7,200 STL-10 test
# (monkey dropped) + 2,000 CIFAR-10.1; 20 epochs (reference 3.3)
N_TRAIN, N_VAL, N_TEST, N_OOD, EPOCHS = 45_000, 5_000, 10_000, 9_200, 20


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


def measure(rt: largescale.Runtime, model: torch.nn.Module, stored: int, steps: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (rt.batch_size, 3, stored, stored), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (rt.batch_size,), generator=g).to(rt.device)
    x_eval = torch.randint(0, 256, (rt.eval_batch_size, 3, stored, stored), dtype=torch.uint8, generator=g)
    rt.place(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    boxes = rt.crops(imagedata.ImageSet(x, y.cpu()), imagedata.augmentation_generator(0, 1))

    def train_step():
        model.train()
        with rt.autocast():
            loss = F.cross_entropy(model(rt.train_inputs(x, boxes)).float(), y)
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


def projected_row_seconds(m: dict) -> float:
    """LP features, then FT and LP-FT at one learning rate and seed, from the measured throughputs."""
    lp = (N_TRAIN + N_VAL + N_TEST + N_OOD) / m["eval_images_per_s"]
    one_run = EPOCHS * (N_TRAIN / m["train_images_per_s"] + N_VAL / m["eval_images_per_s"]) + \
        (N_TEST + N_OOD) / m["eval_images_per_s"]
    return lp + 2 * one_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="resnet50", choices=list(backbones.ARCHS))
    parser.add_argument("--width", type=int, default=64)
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
    crop = {"CIFAR (resize 32 px)": dict(stored=32, augment="none", centre_crop=False),
            "BREEDS (random-resized-crop from 256 px)": dict(stored=256, augment="random-resized-crop",
                                                             centre_crop=True)}
    rows = []
    for data, c in crop.items():
        for name, options in settings.items():
            rt = largescale.Runtime(device=args.device, image_size=args.image_size, augment=c["augment"],
                                    centre_crop=c["centre_crop"], **options)
            model = backbones.Classifier(backbones.ResNet(args.arch, args.width), 10)
            rows.append({"data": data, "setting": name, **measure(rt, model, c["stored"], args.steps)})
            del model
    base = {r["data"]: r for r in rows if r["setting"] == "fp32"}
    print(f"{args.arch} (width {args.width}) at {args.image_size} px on {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if args.device == 'cuda' else ''}, {args.threads} thread(s)")
    for r in rows:
        b = base[r["data"]]
        r["train_ratio_to_fp32"] = r["train_images_per_s"] / b["train_images_per_s"]
        r["eval_ratio_to_fp32"] = r["eval_images_per_s"] / b["eval_images_per_s"]
        print(f"  {r['data']:42s} {r['setting']:22s} train {r['train_images_per_s']:9.1f} img/s "
              f"(x{r['train_ratio_to_fp32']:.2f})  eval {r['eval_images_per_s']:9.1f} img/s "
              f"(x{r['eval_ratio_to_fp32']:.2f})")
    best = max((r for r in rows if r["data"].startswith("CIFAR")), key=lambda r: r["train_images_per_s"])
    seconds = projected_row_seconds(best)
    print(f"projected CIFAR-10 -> STL-10 row (LP features, FT and LP-FT at one lr, one seed; {best['setting']}): "
          f"{seconds / 60:.1f} min (without the LP C sweep on the CPU)")
    if args.out:
        result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "machine": {"platform": platform.platform(), "processor": platform.processor(),
                              "cpu_count": os.cpu_count(), "threads": args.threads, "device": args.device,
                              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None},
                  "arch": args.arch, "width": args.width, "image_size": args.image_size, "steps": args.steps,
                  "rows": rows, "projected_cifar_stl_row_minutes": seconds / 60,
                  "environment": environment(), "git_revision": git_revision()}
        atomic_write_text(args.out, json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""GPU check: lpft's GPU path on one GPU, in under 8 minutes, one PASS/FAIL line per check.

    .venv/bin/python benchmarks/gpu_check.py --out archive/benchmarks/gpu-check.json

Running it needs a lent GPU (a CUDA build of PyTorch and a visible device). Without one it says so and exits 0 having
run nothing; ``--allow-cpu`` then runs the checks on the CPU at tiny sizes (``--small``, automatic there), which tests
this script, not a GPU (tests/test_gpu_check.py). ``--only`` picks checks:

1. ``int_mm``: :func:`lpft.fixedpoint.kernel.fixed_point_linear` through ``torch._int_mm`` on the device, and its int32
   accumulator, bit for bit against the int64 reference on the CPU, over random cases: uint8 (the ``x - 128`` offset
   path) and int8 inputs, M < 17 and K, N not multiples of 8 (the padding path) and aligned shapes, left, zero and
   right shifts, signed and unsigned outputs, extreme values; a few also under ``torch.compile(fullgraph=True)``.
2. ``digit_net``: the fixed-point chapter's integer-only ``FixedPointDigitNet`` (the chapter's conversion, of digit
   networks trained for seconds on the CPU): integer features and logits on the device identical to the CPU's.
3. ``ft_step``: FT steps of a full-size ResNet-50 (``lpft.scale.backbones``) through the paper-scale ``Runtime``
   (bf16 autocast, channels-last, generated uint8 images resized on the device, batch 64): finite losses, bf16
   logits, channels-last tensors; images/s after warm-up (on the CPU: a width-8 ResNet-18).
4. ``sweep``: the paper-scale loop end to end on the device: the quick profile's cifar-stl smoke setting on generated
   files in the real formats and a random-weight checkpoint (``write_quick_inputs``), into a temporary folder: every
   job's record, computed on the device, with finite numbers.
5. ``resume`` (beyond the issue's list): one FT run of that setting, interrupted after its first epoch and run again,
   resumes from its epoch checkpoint on the device.
6. ``projection``: ``benchmarks/largescale.py --device cuda --row cifar-stl`` in a subprocess, and its projected time
   of the CIFAR-10 -> STL-10 row (on the CPU, of a width-4 ResNet-18: machinery only).

Each check has a time budget (over it, it is stopped and fails) and prints its wall seconds; the script exits 1 when
any check fails. ``--out`` writes the results with the device, PyTorch, CUDA and cuDNN versions, git revision and
timings as JSON, atomically.
"""
import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lpft import digits, finetune  # noqa: E402
from lpft.fixedpoint import kernel  # noqa: E402
from lpft.fixedpoint.network import FixedPointDigitNet  # noqa: E402
from lpft.records import atomic_write_text, environment, git_revision  # noqa: E402
from lpft.scale import backbones, experiments, imagedata, finetune as scale_finetune, sweep as sweeps  # noqa: E402
from lpft.task import Classifier  # noqa: E402

LARGESCALE = Path(__file__).resolve().parent / "largescale.py"
CHECKS = ("int_mm", "digit_net", "ft_step", "sweep", "resume", "projection")
SHIFTS = (-5, -1, 0, 1, 2, 3, 5, 8, 11, 14, 17, 20, 24, 31)
DIMS = (1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 24, 31, 33, 64, 65, 100, 127, 128, 257, 512, 1000, 1024)  # M, K and N
EDGE_SHAPES = ((1, 1, 1), (16, 8, 8), (17, 8, 8), (5, 13, 10), (16, 100, 7), (33, 64, 65), (17, 3, 9))


@dataclass
class Sizes:
    """How big each check runs: the GPU's sizes (:data:`FULL`) or tiny ones for the CPU (:data:`SMALL`)."""
    cases: int           # 1: random cases, of which ``compiled`` also run compiled
    compiled: int
    dims: tuple          # 1: the M, K and N drawn from
    digit_images: int    # 2: images compared
    arch: str            # 3: the backbone, its width (None: as published), input size, batch and steps
    width: int | None
    image_size: int
    batch: int
    warmup: int
    steps: int
    sweep: dict          # 4, 5: changes to the smoke setting
    largescale: tuple    # 6: largescale.py's arguments beyond --device, --row and --out
    budgets: dict        # seconds per check


FULL = Sizes(cases=400, compiled=2, dims=DIMS, digit_images=2048, arch="resnet50", width=None, image_size=224,
             batch=experiments.EXPERIMENTS["cifar-stl"].paper.batch_size, warmup=3, steps=10, sweep={},
             largescale=("--steps", "10"),
             budgets=dict(int_mm=90, digit_net=40, ft_step=60, sweep=120, resume=40, projection=110))
SMALL = Sizes(cases=80, compiled=0, dims=tuple(d for d in DIMS if d <= 65), digit_images=256,
              arch="resnet18", width=8, image_size=32, batch=16, warmup=1, steps=2,
              sweep=dict(width=4, image_size=16, seeds=(0,), epochs=2, n_val=40, max_train=96, max_eval=40,
                         feature_n=20, Cs=(0.1, 1.0), ft_lrs=(1e-2,), lpft_lrs=(1e-3,), l2sp_lrs=(1e-2,)),
              largescale=("--arch", "resnet18", "--width", "4", "--image-size", "32", "--steps", "1"),
              budgets=dict(int_mm=120, digit_net=120, ft_step=120, sweep=300, resume=120, projection=120))


@dataclass
class Result:
    """One check's outcome, its wall seconds against its budget, what it measured and the error that stopped it."""
    name: str
    title: str
    budget_s: float
    status: str = "FAIL"
    summary: str = ""
    seconds: float = 0.0
    details: dict = field(default_factory=dict)
    error: str | None = None


@contextmanager
def time_limit(seconds: float):
    """Raise ``TimeoutError`` in this (main) thread once ``seconds`` have passed (SIGALRM: POSIX)."""
    def stop(signum, frame):
        raise TimeoutError(f"stopped after its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


def failed(facts: dict) -> str:
    return "" if all(facts.values()) else f"; failed: {[k for k, v in facts.items() if not v]}"


# ---- 1. the integer GEMM and the fixed-point linear layer ----------------------------------------------------------

def int_mm_case(i: int, sizes: Sizes, g: torch.Generator) -> dict:
    """Case ``i``: the edge shapes first (each with uint8 and int8 inputs, signed and unsigned outputs), then random
    shapes; uint8 on even ``i``, signed output on ``i % 4 < 2``; every fifth case at extreme values."""
    x_dtype, out_signed = (torch.uint8, torch.int8)[i % 2], i % 4 < 2

    def pick(seq):
        return seq[int(torch.randint(len(seq), (), generator=g))]

    m, k, n = EDGE_SHAPES[i // 4] if i // 4 < len(EDGE_SHAPES) else (pick(sizes.dims) for _ in range(3))
    lo, hi = (0, 256) if x_dtype == torch.uint8 else (-128, 128)
    if i % 5 == 4:  # the largest accumulators: every input at its extreme, every weight -128
        x = torch.full((m, k), lo if x_dtype == torch.int8 else hi - 1, dtype=x_dtype)
        w = torch.full((n, k), -128, dtype=torch.int8)
    else:
        x = torch.randint(lo, hi, (m, k), generator=g).to(x_dtype)
        w = torch.randint(-128, 128, (n, k), generator=g).to(torch.int8)
    bound = kernel.INT32_MAX - k * kernel.max_abs_product(x_dtype)  # the largest bias the kernel accepts
    scale = min(pick((1, 2**8, 2**16, 2**24, bound)), bound)
    b = torch.randint(-scale, scale + 1, (n,), generator=g).to(torch.int32)
    return {"x": x, "w": w, "b": b, "shift": pick(SHIFTS), "out_signed": out_signed}


def reference(c: dict) -> torch.Tensor:
    return kernel.reference_linear(c["x"], c["w"], c["b"], c["shift"], out_signed=c["out_signed"])


def check_int_mm(device: str, sizes: Sizes) -> tuple[bool, str, dict]:
    g = torch.Generator().manual_seed(0)
    cases = [int_mm_case(i, sizes, g) for i in range(sizes.cases)]
    acc_bad, out_bad = [], []
    for i, c in enumerate(cases):
        x, w, b = (c[k].to(device) for k in ("x", "w", "b"))
        exact = c["x"].to(torch.int64) @ c["w"].to(torch.int64).T
        if not torch.equal(kernel.int_mm(x, w).cpu().to(torch.int64), exact):
            acc_bad.append(i)
        if not torch.equal(kernel.fixed_point_linear(x, w, b, c["shift"], out_signed=c["out_signed"]).cpu(),
                           reference(c)):
            out_bad.append(i)
    padded = {i for i, c in enumerate(cases) if c["x"].shape[0] < 17 or c["x"].shape[1] % 8 or c["w"].shape[0] % 8}
    uint8 = {i for i, c in enumerate(cases) if c["x"].dtype == torch.uint8}
    coverage = {"uint8 inputs": len(uint8), "int8 inputs": len(cases) - len(uint8),
                "padded (M < 17 or K, N not multiples of 8)": len(padded), "aligned": len(cases) - len(padded),
                "unsigned outputs": sum(not c["out_signed"] for c in cases),
                "left shifts": sum(c["shift"] < 0 for c in cases), "right shifts": sum(c["shift"] > 0 for c in cases),
                "shift 0": sum(c["shift"] == 0 for c in cases)}
    compiled = {"cases": 0, "mismatches": 0, "error": None}
    if sizes.compiled:  # padded uint8 cases and aligned int8 ones, compiled as the fixed-point chapter compiles it
        chosen = sorted(padded & uint8)[:(sizes.compiled + 1) // 2] + \
            sorted(set(range(len(cases))) - padded - uint8)[:sizes.compiled // 2]
        fn = torch.compile(kernel.fixed_point_linear, fullgraph=True, dynamic=False)
        try:
            for c in (cases[i] for i in chosen):
                got = fn(*(c[k].to(device) for k in ("x", "w", "b")), c["shift"], out_signed=c["out_signed"]).cpu()
                compiled["cases"] += 1
                compiled["mismatches"] += not torch.equal(got, reference(c))
        except Exception as e:  # noqa: BLE001 - reported, and the check fails
            compiled["error"] = f"{type(e).__name__}: {e}"[:500]
    path = "cuBLASLt int8 GEMM" if device == "cuda" else "CPU _int_mm"
    ok = not acc_bad and not out_bad and all(coverage.values()) and not compiled["error"] \
        and not compiled["mismatches"] and compiled["cases"] == sizes.compiled
    summary = (f"{len(cases)} cases ({path}): {len(out_bad)} output and {len(acc_bad)} accumulator mismatches vs the "
               f"int64 reference; compiled: {compiled['cases']} cases, {compiled['mismatches']} mismatches"
               + (f" ({compiled['error']})" if compiled["error"] else ""))
    return ok, summary, {"cases": len(cases), "output_mismatches": out_bad, "accumulator_mismatches": acc_bad,
                         "coverage": coverage, "compiled": compiled, "path": path}


# ---- 2. the integer-only digit network -----------------------------------------------------------------------------

def quick_digit_net(norm: str, x: torch.Tensor, y: torch.Tensor) -> digits.DigitNet:
    """A DigitNet trained briefly on the CPU (2 epochs of Adam, seed 0): a few seconds, and features worth comparing."""
    torch.manual_seed(0)
    model = digits.DigitNet(norm=norm)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def integer_pass(fixed: FixedPointDigitNet, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer features and logits of the uint8 images ``q``, on the CPU, computed on ``fixed``'s device."""
    features = fixed.integer_features(q.to(fixed.w_head.device))
    return features.cpu(), fixed.integer_head(features).cpu()


def check_digit_net(device: str, sizes: Sizes) -> tuple[bool, str, dict]:
    x, y = digits.load_domain("mnist")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    test = order[len(x) - sizes.digit_images // 2:]
    calibration, train = order[:512], order[512:len(x) - len(test)]  # the chapter calibrates on 512 training images
    images, labels = torch.cat([x[test], 1 - x[test]]), torch.cat([y[test], y[test]])  # ID and inverted (OOD)
    models = {norm: quick_digit_net(norm, x[train], y[train]) for norm in ("group", "none")}
    details, ok = {}, True
    variants = {"GroupNorm, pooled once (the chapter's)": ("group", {}),
                "GroupNorm, pooled twice": ("group", {"pool": "twice"}), "no norm, pooled once": ("none", {})}
    for name, (norm, options) in variants.items():
        with torch.no_grad():
            fixed = FixedPointDigitNet(models[norm], x[calibration], **options)
        q = fixed.quantize_input(images)
        (features, logits), (features_d, logits_d) = integer_pass(fixed, q), \
            integer_pass(copy.deepcopy(fixed).to(device), q)
        same = torch.equal(features, features_d) and torch.equal(logits, logits_d)
        details[name] = {"images": len(q), "identical": same, "features_differ": int((features != features_d).sum()),
                         "logits_differ": int((logits != logits_d).sum()),
                         "predictions_differ": int((logits.argmax(1) != logits_d.argmax(1)).sum()),
                         "distinct_feature_codes": int(features.unique().numel()),
                         "fixed_point_accuracy": (logits.argmax(1) == labels).double().mean().item()}
        ok &= same and details[name]["distinct_feature_codes"] > 1  # not a comparison of constant outputs
    differ = {k: sum(d[k] for d in details.values()) for k in ("features_differ", "logits_differ")}
    summary = (f"{len(variants)} networks x {len(images)} images: integer features and logits on {device} "
               f"{'identical to' if ok else 'NOT identical to'} the CPU's ({differ['features_differ']} feature codes "
               f"and {differ['logits_differ']} logits differ)")
    return ok, summary, details


# ---- 3. FT steps of a ResNet-50 in bf16 + channels-last ------------------------------------------------------------

def check_ft_step(device: str, sizes: Sizes) -> tuple[bool, str, dict]:
    torch.manual_seed(0)
    rt = scale_finetune.Runtime(device=device, precision="bf16", channels_last=True, image_size=sizes.image_size,
                                batch_size=sizes.batch)
    model = rt.place(Classifier(backbones.build_backbone("moco_v2", sizes.arch, sizes.width), 10), training=True)
    n, g = sizes.batch * (sizes.warmup + sizes.steps), torch.Generator().manual_seed(0)
    data = imagedata.ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                              torch.randint(0, 10, (n,), generator=g))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=finetune.MOMENTUM)
    draws, losses, start = rt.draws(data, 0, 0), [], time.perf_counter()
    for step, idx in enumerate(rt.order(n, 0, 0, g).split(sizes.batch)):  # the step of lpft.finetune.train
        if step == sizes.warmup:
            sync(device)
            start = time.perf_counter()
        x = rt.train_inputs(data, idx, draws)
        opt.zero_grad(set_to_none=True)
        with rt.autocast():
            logits = model.train()(x)
            loss = F.cross_entropy(logits.float(), data.y[idx].to(device))
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    sync(device)
    rate, losses = sizes.batch * sizes.steps / (time.perf_counter() - start), [v.item() for v in losses]
    facts = {"inputs channels-last": x.is_contiguous(memory_format=torch.channels_last),
             "weights channels-last": model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last),
             "logits bf16": logits.dtype == torch.bfloat16, "finite losses": all(map(math.isfinite, losses)),
             "finite weights": all(bool(p.isfinite().all()) for p in model.parameters())}
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    shape = f"{sizes.arch} (width {sizes.width or 'as published'}) at {sizes.image_size} px, batch {sizes.batch}"
    summary = (f"{shape}, bf16 + channels-last: {rate:.1f} images/s over {sizes.steps} steps after {sizes.warmup} "
               f"warm-up; loss {losses[0]:.3f} -> {losses[-1]:.3f}" + failed(facts))
    return all(facts.values()), summary, {"shape": shape, "images_per_s": rate, "losses": losses, **facts,
                                          "max_memory_gib": memory}


# ---- 4. the paper-scale loop end to end, and 5. a run resumed from its epoch checkpoint ----------------------------

def finite(records: list[dict]) -> bool:
    """Whether every accuracy, feature change and training-history number of ``records`` is finite."""
    text = json.dumps([{k: v for k, v in r["results"].items() if k not in ("paths", "device")} for r in records])
    return "NaN" not in text and "Infinity" not in text


def smoke_sweep(device: str, sizes: Sizes, scratch: Path, folder: str) -> sweeps.Sweep:
    """The quick profile's cifar-stl setting (changed by ``sizes.sweep``) on ``device``, its generated inputs written
    once under ``scratch`` (:func:`lpft.scale.experiments.write_quick_inputs`, as the quick profile's chapters)."""
    smoke = replace(experiments.smoke("cifar-stl"), **sizes.sweep)
    inputs = scratch / "inputs"
    data_root, checkpoint = (inputs / "data", next(inputs.glob("*.pt"))) if inputs.is_dir() else \
        experiments.write_quick_inputs(inputs, smoke)
    return replace(experiments.sweep_for("cifar-stl", "smoke", data_root=data_root, checkpoint=checkpoint,
                                         folder=scratch / folder, device=device), **sizes.sweep)


def check_sweep(device: str, sizes: Sizes, scratch: Path) -> tuple[bool, str, dict]:
    sweep = smoke_sweep(device, sizes, scratch, "records")
    expected, records = sweeps.jobs(sweep), sweeps.run_sweep(sweep)
    precision = sorted({r["config"]["training"]["precision"] for r in records if "training" in r["config"]})
    want = "bf16" if device == "cuda" else "fp32"  # lpft.scale.finetune.Runtime.for_device
    facts = {"every job has its record": sorted(map(sweeps.job_name, expected)) ==
             sorted(sweeps.job_name(r["config"]) for r in records),
             f"computed on {device_name(device)}": all(r["results"]["device"] == device_name(device) for r in records),
             f"trained in {want}": precision == [want],
             "finite accuracies and feature changes": finite(records)}
    summary = (f"cifar-stl smoke on {device} ({sweep.arch}, width {sweep.width}, {sweep.image_size} px, "
               f"{sweep.epochs} epochs, {'/'.join(precision)}): {len(records)} records of {len(expected)} jobs"
               + failed(facts))
    accuracies = {sweeps.job_name(r["config"]): {"val": r["results"]["val"], "id": r["results"]["id"],
                                                 **r["results"]["ood"]} for r in records}
    seconds = {sweeps.job_name(r["config"]): r["results"]["seconds"] for r in records}
    return all(facts.values()), summary, {**facts, "jobs": len(expected), "records": len(records),
                                          "accuracies": accuracies, "seconds_per_run": seconds}


class Interrupt(Exception):
    pass


def check_resume(device: str, sizes: Sizes, scratch: Path) -> tuple[bool, str, dict]:
    sweep = replace(smoke_sweep(device, sizes, scratch, "resume"), wise_alphas=())  # FT alone: no LP needed
    job = {"method": "FT", "lr": sweep.ft_lrs[0], "seed": sweep.seeds[0]}
    checkpoints = Path(sweep.folder) / "checkpoints"

    def interrupt(epoch):
        raise Interrupt

    try:
        sweeps.run_job(sweep, job, on_epoch_end=interrupt)     # stopped after its first epoch's checkpoint
    except Interrupt:
        pass
    left, resumed = len(list(checkpoints.glob("*.pt"))), []
    record = sweeps.run_job(sweep, job, on_epoch_end=resumed.append)
    facts = {"one epoch checkpoint after the interruption": left == 1,
             "resumed at epoch 2": resumed == list(range(2, sweep.epochs + 1)),
             "checkpoint removed once recorded": not list(checkpoints.glob("*.pt")),
             f"computed on {device_name(device)}": record["results"]["device"] == device_name(device),
             "finite accuracies": finite([record])}
    summary = (f"{sweeps.job_name(job)} interrupted after epoch 1 and resumed from its checkpoint: epochs "
               f"{resumed}, ID-val {record['results']['val']:.3f}" + failed(facts))
    return all(facts.values()), summary, facts


# ---- 6. the projected time of the CIFAR-10 -> STL-10 row -----------------------------------------------------------

def check_projection(device: str, sizes: Sizes, scratch: Path) -> tuple[bool, str, dict]:
    out = scratch / "largescale.json"
    command = [sys.executable, str(LARGESCALE), "--device", device, "--row", "cifar-stl", *sizes.largescale,
               "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        print(f"    {line}")
    if proc.returncode != 0:
        return False, f"largescale.py exited with {proc.returncode}", {"stderr": proc.stderr[-3000:]}
    result = json.loads(out.read_text())
    row, sweep = result["projected_row_minutes"], result["projected_sweep_hours"]
    line = next((s for s in proc.stdout.splitlines() if s.startswith("projected ")), "")
    ok = math.isfinite(row) and math.isfinite(sweep) and 0 < row < 60 * sweep and bool(line)
    return ok, line or "no projection printed", {"command": " ".join(command[1:]), "projected_row_minutes": row,
                                                 "projected_sweep_hours": sweep, "rows": result["rows"]}


# ---- the runner ----------------------------------------------------------------------------------------------------

TITLES = {"int_mm": "fixed_point_linear through torch._int_mm on {device} vs the int64 reference",
          "digit_net": "integer-only digit network, {device} vs CPU",
          "ft_step": "bf16 + channels-last FT steps of {arch} on {device}",
          "sweep": "paper-scale loop end to end (cifar-stl smoke) on {device}",
          "resume": "a paper-scale run interrupted and resumed from its epoch checkpoint on {device}",
          "projection": "projected time of the CIFAR-10 -> STL-10 row (benchmarks/largescale.py) on {device}"}


def run_check(number: int, name: str, title: str, budget: float, fn, *args) -> Result:
    print(f"[{number}] {name}: {title} (budget {budget:.0f} s)", flush=True)
    result, start = Result(name, title, budget), time.perf_counter()
    try:
        with time_limit(budget):
            ok, result.summary, result.details = fn(*args)
        result.status = "PASS" if ok else "FAIL"
    except Exception as e:  # noqa: BLE001 - a check that raises fails; the others still run
        result.status, result.error = "FAIL", f"{type(e).__name__}: {e}"
        result.summary = result.error
        print("".join(traceback.format_exc().splitlines(keepends=True)[-12:]), end="", file=sys.stderr)
    result.seconds = round(time.perf_counter() - start, 1)
    print(f"{result.status} {name}: {result.summary} [{result.seconds:.1f} s]", flush=True)
    return result


def machine(device: str) -> dict:
    info = {"device": device, "device_name": "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    memory_gib=round(props.total_memory / 2**30, 1), gpus_visible=torch.cuda.device_count())
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="without a GPU, run the checks on the CPU at tiny sizes (tests this script, not a GPU)")
    parser.add_argument("--small", action="store_true", help="tiny sizes (automatic on the CPU)")
    parser.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated checks to run, of {CHECKS}")
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    if unknown := sorted(set(only) - set(CHECKS)):
        parser.error(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    if torch.cuda.is_available():
        device = "cuda"
    elif args.allow_cpu:
        device = "cpu"
        print("no CUDA device is visible: --allow-cpu runs the checks on the CPU at tiny sizes (this tests the "
              "script, not a GPU)")
    else:
        print(f"no CUDA device is visible (torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}"
              f", CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}): these checks need a GPU; "
              "nothing was run (--allow-cpu runs them on the CPU at tiny sizes instead)")
        return 0
    sizes = SMALL if args.small or device == "cpu" else FULL
    info = machine(device)
    print(f"GPU check on {info['device_name']}: torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, "
          f"{'small' if sizes is SMALL else 'full'} sizes, git {git_revision()}", flush=True)
    start, results = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        functions = {"int_mm": (check_int_mm,), "digit_net": (check_digit_net,), "ft_step": (check_ft_step,),
                     "sweep": (check_sweep, Path(scratch)), "resume": (check_resume, Path(scratch)),
                     "projection": (check_projection, Path(scratch))}
        for number, name in enumerate(CHECKS, 1):
            if name in only:
                fn, *extra = functions[name]
                title = TITLES[name].format(device=device, arch=sizes.arch)
                results.append(run_check(number, name, title, sizes.budgets[name], fn, device, sizes, *extra))
    total = time.perf_counter() - start
    bad = [r.name for r in results if r.status == "FAIL"]
    print("\nsummary:")
    for r in results:
        print(f"  {r.status:4s} {r.name:10s} {r.seconds:7.1f} s (budget {r.budget_s:.0f} s)")
    print(f"{'FAIL' if bad else 'PASS'}: {len(results) - len(bad)} passed, {len(bad)} failed in {total:.1f} s on "
          f"{info['device_name']}" + (f" ({', '.join(bad)})" if bad else ""))
    if args.out:
        report = {"passed": not bad, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  **info, "git_revision": git_revision(), "sizes": "small" if sizes is SMALL else "full",
                  "total_seconds": round(total, 1), "checks": [asdict(r) for r in results],
                  "environment": environment()}
        atomic_write_text(args.out, json.dumps(report, indent=2, default=str))
        print(f"wrote {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the fixed-point linear layer (lpft.fixedpoint) against fp32 ``nn.Linear`` and the bare integer GEMM.

    .venv/bin/python benchmarks/fixedpoint.py [--device cpu|cuda] [--threads 1] [--rounds 5] [--out FILE.json]

For each shape (batch M, in K -> out N) it times, in one process and interleaved over ``--rounds`` rounds:
fp32 ``nn.Linear``; the fixed-point layer eager; the same layer under ``torch.compile(fullgraph=True)``; and
the integer GEMM alone (:func:`lpft.fixedpoint.kernel.int_mm`, without the requantisation epilogue: on a CPU
PyTorch's int32 matrix product, on CUDA ``torch._int_mm``). It prints min and median milliseconds and the ratio of
each median to fp32's, checks that eager and compiled outputs agree bit for bit with the int64 reference, and says
which integer GEMM ran.
``--out`` writes the measurements with the machine, versions and git revision as JSON (the fixed-point chapter shows
the committed ``archive/benchmarks/fixedpoint-cpu.json``).
"""
import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from lpft import numeric

numeric.pin()  # the book's kernels (lpft.numeric), before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils import benchmark  # noqa: E402

from lpft.fixedpoint import kernel, qformat
from lpft.records import atomic_write_text, environment, git_revision  # noqa: E402

SHAPES = ((512, 512, 512), (512, 2048, 2048), (520, 1024, 256))  # M != K: no duck-sizing recompiles


def int_mm_path(device: str) -> str:
    if device == "cuda":
        return f"cuBLASLt int8 GEMM on {torch.cuda.get_device_name()}"
    return "PyTorch's int32 matrix product (exact on every CPU; torch._int_mm is not used on a CPU, see " \
           "lpft.fixedpoint.kernel.int_mm)"


def case(m: int, k: int, n: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(k, n).to(device).eval()
    x = torch.relu(torch.randn(m, k, generator=g)).to(device)
    fl_x = qformat.choose_fl(x.cpu(), signed=False)
    fl_w = qformat.choose_fl(linear.weight.detach().cpu(), signed=True)
    with torch.no_grad():
        y = linear(x)
    fl_y = qformat.choose_fl(y.cpu(), signed=True)
    x_q = qformat.quantize(x.cpu(), fl_x, signed=False).to(device)
    w_q = qformat.quantize(linear.weight.detach().cpu(), fl_w, signed=True).to(device)
    b_q = torch.round(linear.bias.detach().cpu().double() * 2.0 ** (fl_x + fl_w)).to(torch.int32).to(device)
    return linear, x, x_q, w_q, b_q, fl_x + fl_w - fl_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds per measurement")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    path = int_mm_path(device)
    print(f"torch {torch.__version__}, device {device}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}")
    print(f"integer GEMM: {path}")
    compiled = torch.compile(kernel.fixed_point_linear, fullgraph=True, dynamic=False)
    rows = []
    for m, k, n in SHAPES:
        linear, x, x_q, w_q, b_q, shift = case(m, k, n, device)
        eager_out = kernel.fixed_point_linear(x_q, w_q, b_q, shift)
        compiled_out = compiled(x_q, w_q, b_q, shift)          # compiles here, outside the timed region
        exact = bool(torch.equal(eager_out.cpu(), kernel.reference_linear(x_q, w_q, b_q, shift))
                     and torch.equal(compiled_out.cpu(), eager_out.cpu()))
        variants = {
            "fp32 nn.Linear": lambda: linear(x),
            "fixed point, eager": lambda: kernel.fixed_point_linear(x_q, w_q, b_q, shift),
            "fixed point, compiled": lambda: compiled(x_q, w_q, b_q, shift),
            "integer GEMM alone": lambda: kernel.int_mm(x_q, w_q),
        }
        times = {name: [] for name in variants}
        with torch.inference_mode():
            for _ in range(args.rounds):                          # interleaved: load changes hit every variant alike
                for name, fn in variants.items():
                    t = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=args.threads)
                    times[name].extend(t.blocked_autorange(min_run_time=args.min_run_time).times)
        base = float(np.median(times["fp32 nn.Linear"]))
        print(f"\nM={m}, K={k} -> N={n} (shift {shift}); compiled = eager = int64 reference: {exact}")
        print(f"  {'variant':24s} {'min ms':>8s} {'median ms':>10s} {'fp32 / this':>12s}")
        for name, ts in times.items():
            med = float(np.median(ts))
            print(f"  {name:24s} {1e3 * min(ts):8.3f} {1e3 * med:10.3f} {base / med:11.2f}x")
            rows.append({"M": m, "K": k, "N": n, "variant": name, "min_ms": 1e3 * min(ts), "median_ms": 1e3 * med,
                         "speedup_vs_fp32": base / med, "bit_exact": exact})
        eager, comp = (float(np.median(times[v])) for v in ("fixed point, eager", "fixed point, compiled"))
        print(f"  compiled vs eager fixed point: {eager / comp:.2f}x")
    if args.out:
        result = {"rows": rows, "device": device, "threads": args.threads, "int_mm_path": path,
                  "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                  "rounds": args.rounds, "environment": environment(), "git_revision": git_revision(),
                  "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""Benchmark: batched gradient descent over many instances vs a plain per-instance NumPy loop.

    .venv/bin/python benchmarks/batched_gd.py [--instances 1000] [--steps 1000]

All runs use the same instances, step size and number of steps, on one thread, in one process; the script prints each
variant's wall time and its speed-up over the NumPy loop, and checks that all variants reach the same iterates.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lpft import dynamics, theory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)
    instances = [theory.make_instance(theory.Setting(eps=0.1), seed=s) for s in range(args.instances)]
    T = dynamics.stack_instances(instances)
    batch = (T["X"], T["Y"], T["B0"], T["v0"])
    print(f"{args.instances} instances of {theory.Setting(eps=0.1)}, {args.steps} GD steps each, torch "
          f"{torch.__version__}, 1 thread")

    start = time.perf_counter()
    reference = [dynamics.numpy_gd(i.X, i.Y, i.B0, i.v0, args.lr, args.steps) for i in instances]
    t_numpy = time.perf_counter() - start

    results = {}
    for name, compile_ in (("batched torch (eager)", False), ("batched torch (torch.compile)", True)):
        if compile_:  # compile once, outside the timed region (a one-off cost of a few seconds)
            warm = time.perf_counter()
            dynamics.fine_tune_batched(*batch, lr=args.lr, steps=2, compile=True)
            print(f"  torch.compile warm-up: {time.perf_counter() - warm:.1f} s (not included below)")
        start = time.perf_counter()
        run = dynamics.fine_tune_batched(*batch, lr=args.lr, steps=args.steps, compile=compile_)
        results[name] = (time.perf_counter() - start, run)

    print(f"{'variant':32s} {'seconds':>9s} {'speed-up':>9s} {'max |B − B_numpy|':>18s}")
    print(f"{'per-instance NumPy loop':32s} {t_numpy:9.2f} {1.0:9.1f}x {0.0:18.1e}")
    for name, (seconds, run) in results.items():
        err = max(np.abs(run.B[-1, i].numpy() - ref.B[-1]).max() for i, ref in enumerate(reference))
        print(f"{name:32s} {seconds:9.2f} {t_numpy / seconds:9.1f}x {err:18.1e}")
        assert err < 1e-9, "batched GD disagrees with the per-instance loop"


if __name__ == "__main__":
    main()

"""``lpft-sweep``: one paper-scale experiment's sweep from the command line (e.g. on a cluster), into the records that
a chapter reads back::

    lpft-sweep --experiment living17 --profile full --data-root /data \\
        --checkpoint /weights/moco_v2_800ep_pretrain.pth.tar --device cuda --executor slurm --slurm-partition gpu

``--profile full`` runs the paper's settings of the experiment (:mod:`lpft.scale.experiments`), ``--profile quick``
its smoke override; ``--set FIELD=VALUE`` changes any other setting of the :class:`~lpft.scale.sweep.Sweep`.
Inputs, records and the image cache come from the flags or the environment (``$LPFT_DATA_ROOT``, the weights'
``$LPFT_*CHECKPOINT``, ``$LPFT_RESULTS``, ``$LPFT_CACHE``), else from ``data/``, ``checkpoints/``, ``results/`` and
``cache/images`` under the current folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

from lpft import numeric
from lpft.scale import backbones, experiments, tables
from lpft.scale.sweep import EXECUTORS, Sweep, run_sweep

ENV_RESULTS = "LPFT_RESULTS"
PROFILES = {"full": None, "quick": "smoke"}  # profile -> the override of the paper's settings it applies


def records_folder(results, experiment: str, profile: str) -> Path:
    """Where ``lpft-sweep`` and the book's chapters keep ``experiment``'s records of ``profile``:
    ``<results>/paper-scale/<profile>/<experiment>``."""
    return Path(results) / "paper-scale" / profile / experiment


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"lpft-sweep: --option takes KEY=VALUE; got {text!r}")
    return key, _value(value)


def _setting(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` of a :class:`Sweep` setting; a tuple field takes comma-separated values ("" for none)."""
    key, sep, value = text.partition("=")
    if not sep or key not in experiments.setting_fields():
        raise SystemExit(f"lpft-sweep: --set takes FIELD=VALUE with FIELD one of {experiments.setting_fields()}; "
                         f"got {text!r}")
    if {f.name: f.type for f in fields(Sweep)}[key] == "tuple":
        return key, tuple(_value(v) for v in value.split(",") if v)
    return key, _value(value)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="lpft-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="cifar-stl", choices=list(experiments.EXPERIMENTS))
    parser.add_argument("--profile", default="full", choices=list(PROFILES),
                        help="full: the paper's settings; quick: their smoke override")
    parser.add_argument("--data-root", default="", help=f"default: ${experiments.ENV_DATA_ROOT} or ./data")
    parser.add_argument("--checkpoint", default="", help="default: the experiment's $LPFT_*CHECKPOINT variable "
                                                         "(see lpft.scale.experiments.WEIGHTS) or ./checkpoints/...")
    parser.add_argument("--source", default=None, choices=backbones.SOURCES,
                        help="checkpoint format (default: the paper's backbone for the experiment)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="settings",
                        help="change one setting, e.g. epochs=1 or ft_lrs=0.01,0.03")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--executor", default="inline", choices=EXECUTORS)
    parser.add_argument("--parallel", type=int, default=1, help="local: processes at once; slurm: array parallelism")
    parser.add_argument("--timeout-min", type=int, default=24 * 60)
    parser.add_argument("--slurm-partition", default=None)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a submitit AutoExecutor parameter for slurm, e.g. cpus_per_task=8 or mem_gb=64")
    parser.add_argument("--folder", type=Path, default=None,
                        help=f"records (default: <${ENV_RESULTS} or ./results>/paper-scale/<profile>/<experiment>)")
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")
    parser.add_argument("--list", action="store_true", help="print every experiment's paper settings and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(experiments.experiments_table().to_string())
        return 0
    spec = experiments.experiment_of(args.experiment)
    source = args.source or spec.source
    data_root, checkpoint = experiments.resolve_inputs(args.data_root, args.checkpoint, source, args.experiment)
    missing = experiments.missing_inputs(data_root, checkpoint, args.experiment, source)
    if missing:
        print("lpft-sweep: missing inputs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    if args.executor == "slurm":  # a Slurm submission host need not have the GPU its jobs will get
        device = "cuda" if args.device == "auto" else args.device
    else:
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("lpft-sweep: --device cuda was requested but torch sees no GPU")
    if device == "cpu":  # the book's CPU kernels and one thread per process, for this process and its workers
        numeric.pin()
        for problem in numeric.problems():
            print(f"lpft-sweep: {problem}", file=sys.stderr)
    override = PROFILES[args.profile]
    n_seeds = args.seeds or len(experiments.settings(args.experiment, override).seeds)
    folder = args.folder or records_folder(os.environ.get(ENV_RESULTS) or "results", args.experiment, args.profile)
    sweep = experiments.sweep_for(args.experiment, override, data_root=data_root, checkpoint=checkpoint,
                                  folder=folder, device=device, source=source, cache=experiments.resolve_cache(),
                                  seeds=tuple(range(args.seed, args.seed + n_seeds)),
                                  **dict(_setting(s) for s in args.settings))
    options = dict(_option(o) for o in args.option)
    if args.slurm_partition:
        options["slurm_partition"] = args.slurm_partition
    sweep = replace(sweep, slurm=options, progress=args.progress)
    records = run_sweep(sweep, args.executor, parallel=args.parallel, timeout_min=args.timeout_min)
    print(tables.summarise(records).round(2).to_string())
    print(f"{len(records)} records in {sweep.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

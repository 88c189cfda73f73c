"""Resumable sweeps of the paper-scale experiments: one record per run, run here or on a Slurm cluster (submitit).

A :class:`Sweep` is everything one table of the paper needs (reference Sections 3.3-3.4): the task's files, the
backbone's checkpoint, the LP ``C`` grid, the FT and LP-FT learning-rate grids, epochs and seeds. It expands into
:func:`jobs`: one LP run (deterministic here: no augmentation, ``eval()``-mode features, L-BFGS, so it does not depend
on the seed), and one FT and one LP-FT run per (learning rate, seed). :func:`run_job` runs one of them through
:func:`lpft.runs.run_once`: a finished run's record (config, results, versions, git revision) is read back, never
recomputed; a run that was killed resumes from its last epoch checkpoint (``<folder>/checkpoints/``, deleted once
the record is written). Records are keyed on the config, the sha256 of the checkpoint file, a digest of the loaded
images and the source of the modules that compute them (:data:`CODE_MODULES`).

:func:`run_sweep` runs the jobs in two stages (LP and FT, then LP-FT, which starts from the LP head): ``inline`` in
this process (the default), or through submitit's ``local`` (subprocesses on this machine), ``debug`` (in process)
or ``slurm`` executors. :func:`summarise` selects each method's learning rate by mean ID-val accuracy over seeds
(early stopping already picked each run's epoch) and reports mean and 90% interval over seeds.

The command line runs a sweep without the chapter (e.g. on a cluster); the chapter then reads the same records::

    lpft-sweep --profile full --data-root /data --checkpoint /weights/moco_v2_800ep_pretrain.pth.tar \\
        --device cuda --executor slurm --slurm-partition gpu
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpft import backbones, imagedata, largescale, runs
from lpft.execute import ROOT
from lpft.protocol import interval90

CODE_MODULES = ("imagedata", "backbones", "largescale", "launch", "methods")
EXPERIMENTS = {"cifar-stl": {"id": "CIFAR-10", "ood": ("STL-10", "CIFAR-10.1")}}
EXECUTORS = ("inline", "local", "debug", "slurm")
CHAPTER = "experiments-cifar-stl"
ENV_DATA_ROOT, ENV_CHECKPOINT = "LPFT_DATA_ROOT", "LPFT_CHECKPOINT"


@dataclass(frozen=True)
class Sweep:
    """One experiment's grid and where its inputs and records live (paths are not part of a run's identity)."""
    data_root: str
    checkpoint: str
    folder: str
    source: str = "moco_v2"
    arch: str = "resnet50"
    width: int = 64
    experiment: str = "cifar-stl"
    seeds: tuple = (0, 1, 2)
    Cs: tuple = tuple(float(c) for c in np.logspace(-7, 2, 50))
    ft_lrs: tuple = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    lpft_lrs: tuple = (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)
    epochs: int = 20
    image_size: int = 224
    batch_size: int = 64
    n_val: int = 5000
    max_train: int | None = None
    max_eval: int | None = None
    feature_n: int = 2000
    device: str = "cpu"
    precision: str | None = None      # None: bf16 on a GPU, fp32 on a CPU
    channels_last: bool | None = None  # None: on a GPU only
    progress: bool = False
    slurm: dict = field(default_factory=dict, compare=False, hash=False)

    def runtime(self) -> largescale.Runtime:
        options = {k: v for k, v in (("precision", self.precision), ("channels_last", self.channels_last))
                   if v is not None}
        return largescale.Runtime.for_device(self.device, image_size=self.image_size, batch_size=self.batch_size,
                                             progress=self.progress, **options)


# ---- inputs, loaded once per process ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _task(data_root: str, experiment: str, n_val: int, max_train, max_eval) -> tuple[imagedata.ImageTask, str]:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {list(EXPERIMENTS)}")
    task = imagedata.cifar_task(data_root, ood=EXPERIMENTS[experiment]["ood"], n_val=n_val, max_train=max_train,
                                max_eval=max_eval)
    h = hashlib.sha256()
    for part in (task.train, task.val, task.test_id, *task.ood.values()):
        h.update(part.x.numpy().tobytes())
        h.update(part.y.numpy().tobytes())
    return task, h.hexdigest()[:16]


def load_task(sweep: Sweep) -> tuple[imagedata.ImageTask, str]:
    """The sweep's task and a digest of all its images and labels."""
    return _task(str(sweep.data_root), sweep.experiment, sweep.n_val, sweep.max_train, sweep.max_eval)


@functools.lru_cache(maxsize=2)
def _backbone(checkpoint: str, source: str, arch: str, width: int) -> tuple[backbones.ResNet, str]:
    return backbones.load_backbone(checkpoint, source, arch, width), backbones.file_digest(checkpoint)


def load_backbone(sweep: Sweep) -> tuple[backbones.ResNet, str]:
    """The sweep's pretrained backbone and the sha256 of its checkpoint file."""
    return _backbone(str(sweep.checkpoint), sweep.source, sweep.arch, sweep.width)


@functools.lru_cache(maxsize=2)
def _pretrained_features(sweep: Sweep) -> tuple[dict, dict]:
    task, _ = load_task(sweep)
    backbone, _ = load_backbone(sweep)
    rt = sweep.runtime()
    sets = largescale.evaluation_sets(task, sweep.feature_n)
    return sets, {name: largescale.features(backbone, data, rt) for name, data in sets.items()}


# ---- the jobs -----------------------------------------------------------------------------------------------------

def jobs(sweep: Sweep) -> list[dict]:
    """Every run of the sweep: LP once, then FT and LP-FT per (learning rate, seed)."""
    out = [{"method": "LP"}]
    out += [{"method": "FT", "lr": lr, "seed": s} for lr in sweep.ft_lrs for s in sweep.seeds]
    out += [{"method": "LP-FT", "lr": lr, "seed": s} for lr in sweep.lpft_lrs for s in sweep.seeds]
    return out


def job_config(sweep: Sweep, job: dict) -> dict:
    """What identifies a run's result: the method and its hyperparameters, the seed, and the inputs by content."""
    _, data_digest = load_task(sweep)
    _, weights = load_backbone(sweep)
    common = {"experiment": sweep.experiment, "data": {"digest": data_digest, "n_val": sweep.n_val,
                                                       "max_train": sweep.max_train, "max_eval": sweep.max_eval},
              "backbone": {"source": sweep.source, "arch": sweep.arch, "width": sweep.width, "sha256": weights},
              "image_size": sweep.image_size, "feature_n": sweep.feature_n}
    lp = {"Cs": [float(c) for c in sweep.Cs], "max_iter": largescale.LP_MAX_ITER}
    rt = sweep.runtime()
    training = {"epochs": sweep.epochs, "batch_size": sweep.batch_size, "precision": rt.precision}
    if job["method"] == "LP":
        return {"method": "LP", "common": common, "lp": lp}
    if job["method"] not in ("FT", "LP-FT"):
        raise ValueError(f"method must be LP, FT or LP-FT; got {job['method']!r}")
    config = {"method": job["method"], "common": common, "training": training, "lr": float(job["lr"]),
              "seed": int(job["seed"])}
    return {**config, "lp": lp} if job["method"] == "LP-FT" else config


def job_name(job: dict) -> str:
    return "LP" if job["method"] == "LP" else f"{job['method']}-lr{job['lr']:g}-seed{job['seed']}"


def probe_of(record: dict) -> largescale.Probe:
    """The LP head stored in an LP record."""
    r = record["results"]
    return largescale.Probe(r["C"], np.array(r["head"]["W"]), np.array(r["head"]["b"]), r["grid"])


def run_job(sweep: Sweep, job: dict, on_epoch_end=None) -> dict:
    """The record of one run of ``sweep`` (read back if finished; otherwise computed, resuming from its epoch
    checkpoint if one exists). ``on_epoch_end(epoch)`` is passed to the training loop (tests interrupt runs with it)."""
    torch.set_num_threads(int(os.environ.get("LPFT_TORCH_THREADS", "1")))
    config = job_config(sweep, job)
    name, code = job_name(job), runs.code_fingerprint(CODE_MODULES)
    folder = Path(sweep.folder)
    checkpoint = folder / "checkpoints" / f"{runs.record_path(folder, config, name, code).stem}.pt"

    def compute() -> dict:
        start = time.perf_counter()
        task, _ = load_task(sweep)
        backbone, _ = load_backbone(sweep)
        rt = sweep.runtime()
        if job["method"] == "LP":
            out = _linear_probe(task, backbone, sweep, rt)
        else:
            sets, before = _pretrained_features(sweep)
            options = {"lr": job["lr"], "epochs": sweep.epochs, "seed": job["seed"], "rt": rt,
                       "checkpoint": checkpoint, "on_epoch_end": on_epoch_end, "desc": name}
            if job["method"] == "FT":
                model, info = largescale.fine_tune(backbone, task, **options)
            else:
                probe = probe_of(run_job(sweep, {"method": "LP"}))
                model, info = largescale.lp_ft(backbone, probe, task, **options)
            out = {**largescale.evaluate(model, task, rt, before, sets), **info}
        device = torch.cuda.get_device_name(0) if torch.device(sweep.device).type == "cuda" else "cpu"
        return {**out, "seconds": round(time.perf_counter() - start, 1), "device": device,
                "paths": {"data_root": str(sweep.data_root), "checkpoint": str(sweep.checkpoint)}}

    record = runs.run_once(folder, config, compute, name=name, code=code)
    checkpoint.unlink(missing_ok=True)
    return record


def _linear_probe(task, backbone, sweep: Sweep, rt) -> dict:
    f = {name: largescale.features(backbone, data, rt)
         for name, data in (("train", task.train), ("val", task.val), ("id", task.test_id), *task.ood.items())}
    probe = largescale.linear_probe(f["train"], task.train.y, f["val"], task.val.y, sweep.Cs, task.n_classes,
                                    progress=rt.progress)
    return {"C": probe.C, "grid": probe.table, "val": probe.accuracy(f["val"], task.val.y),
            "id": probe.accuracy(f["id"], task.test_id.y),
            "ood": {name: probe.accuracy(f[name], data.y) for name, data in task.ood.items()},
            "feature_change": {name: 0.0 for name in ("ID", *task.ood)},  # LP keeps the pretrained features
            "head": {"W": probe.W.tolist(), "b": probe.b.tolist()}}


# ---- executors ----------------------------------------------------------------------------------------------------

def submitit_executor(sweep: Sweep, executor: str, *, parallel: int, log_folder: Path, timeout_min: int):
    """submitit's executor for ``executor`` ("local", "debug" or "slurm"), one GPU per job when the sweep's device is
    a GPU; for Slurm, an array of at most ``parallel`` jobs at a time with the options in ``sweep.slurm``."""
    import submitit

    ex = submitit.AutoExecutor(folder=log_folder, cluster=executor)
    gpus = 1 if torch.device(sweep.device).type == "cuda" else 0
    if executor == "slurm":
        ex.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus, tasks_per_node=1, nodes=1,
                             slurm_array_parallelism=max(1, parallel), name="lpft-sweep", **sweep.slurm)
    elif executor == "local":
        ex.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus)
    return ex


def run_sweep(sweep: Sweep, executor: str = "inline", *, parallel: int = 1, log_folder: Path | None = None,
              timeout_min: int = 24 * 60, on_epoch_end=None) -> list[dict]:
    """Every record of ``sweep``, running the missing runs: LP and FT first, then LP-FT. ``executor`` is one of
    :data:`EXECUTORS`: ``inline`` (this process, one run after another), or submitit's ``local`` (at most ``parallel``
    subprocesses at a time), ``debug`` (in process) or ``slurm`` (a job array per stage; ``sweep.slurm`` holds the
    ``slurm_*`` options such as ``slurm_partition``; ``parallel`` caps the array's concurrency)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}; got {executor!r}")
    all_jobs = jobs(sweep)
    stages = [[j for j in all_jobs if j["method"] != "LP-FT"], [j for j in all_jobs if j["method"] == "LP-FT"]]
    records = []
    if executor == "inline":
        for stage in stages:
            records += [run_job(sweep, job, on_epoch_end) for job in stage]
        return records
    ex = submitit_executor(sweep, executor, parallel=parallel,
                           log_folder=Path(log_folder or Path(sweep.folder) / "submitit"), timeout_min=timeout_min)
    chunk = max(1, parallel) if executor == "local" else None
    for stage in stages:
        for i in range(0, len(stage), chunk or len(stage) or 1):
            part = stage[i:i + chunk] if chunk else stage
            submitted = ex.map_array(run_job, [sweep] * len(part), part)
            records += [job.result() for job in submitted]
    return records


# ---- reading the records back -------------------------------------------------------------------------------------

def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: method, lr, seed, ID-val / ID test / OOD accuracies (%), feature change, best epoch."""
    rows = []
    for record in records:  # OOD sets in a fixed (sorted) order: records read back from JSON have sorted keys
        c, r = record["config"], record["results"]
        change = r["feature_change"]
        row = {"method": c["method"], "lr": c.get("lr", float("nan")), "seed": c.get("seed", -1),
               "val": 100 * r["val"], "ID": 100 * r["id"], **{f"OOD {k}": 100 * r["ood"][k] for k in sorted(r["ood"])},
               **{f"change {k}": change[k] for k in ["ID", *sorted(set(change) - {"ID"})]},
               "best_epoch": r.get("best_epoch", 0), "seconds": r["seconds"]}
        rows.append(row)
    return pd.DataFrame(rows)


def select(table: pd.DataFrame) -> pd.DataFrame:
    """The runs each method reports: FT and LP-FT at the learning rate with the best mean ID-val accuracy over seeds
    (the first in grid order on ties), reference Section 3.4; LP's one deterministic run."""
    keep = [table[table["method"] == "LP"]]
    for method in ("FT", "LP-FT"):
        t = table[table["method"] == method]
        if len(t):
            by_lr = t.groupby("lr", sort=False)["val"].mean()
            keep.append(t[t["lr"] == by_lr.idxmax()])
    return pd.concat(keep, ignore_index=True)


def summarise(records: list[dict]) -> pd.DataFrame:
    """Per method (LP, FT, LP-FT): the selected learning rate, number of seeds, and mean and 90% interval over seeds
    of every accuracy and feature-change column. LP is deterministic here: one run, interval 0."""
    chosen = select(runs_table(records))
    values = [c for c in chosen.columns if c in ("val", "ID") or c.startswith(("OOD ", "change "))]
    rows = []
    for method in ("LP", "FT", "LP-FT"):
        t = chosen[chosen["method"] == method]
        if not len(t):
            continue
        row = {"method": method, "lr": t["lr"].iloc[0], "seeds": len(t)}
        for col in values:
            row[col] = t[col].mean()
            row[f"{col} ±"] = 0.0 if method == "LP" else interval90(t[col])
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def compare_with_paper(summary: pd.DataFrame, experiment: str = "cifar-stl") -> pd.DataFrame:
    """This run's accuracies next to the paper's (Tables 1-2, :mod:`lpft.paper`) and the difference, one row per
    (set, method)."""
    from lpft import paper

    spec = EXPERIMENTS[experiment]
    sets = {spec["id"]: "ID", **{o: "OOD" for o in spec["ood"]}}
    ours = {spec["id"]: "ID", **{o: f"OOD {o}" for o in spec["ood"]}}
    table = paper.table(sets)
    table["this run"] = [summary.loc[m, ours[s]] if m in summary.index else float("nan")
                         for s, m in zip(table["set"], table["method"])]
    table["this run ±"] = [summary.loc[m, f"{ours[s]} ±"] if m in summary.index else float("nan")
                           for s, m in zip(table["set"], table["method"])]
    table["difference"] = table["this run"] - table["paper"]
    return table


# ---- settings and the command line --------------------------------------------------------------------------------

FULL_COMMAND = (f"{ENV_DATA_ROOT}=/path/to/data {ENV_CHECKPOINT}=/path/to/moco_v2_800ep_pretrain.pth.tar "
                f".venv/bin/lpft-run {CHAPTER} --profile full --device cuda")


def write_quick_inputs(folder, arch: str, width: int, weights_seed: int = 0) -> tuple[Path, Path]:
    """The quick profile's inputs, written into ``folder`` in the real formats: generated images as CIFAR-10, STL-10
    and CIFAR-10.1 files (:func:`lpft.imagedata.write_synthetic_root`) and a ResNet with random weights (drawn from
    ``weights_seed``) as a MoCo-v2 checkpoint. Returns ``(data_root, checkpoint)``; the same call gives the same bytes."""
    folder = Path(folder)
    imagedata.write_synthetic_root(folder / "data")
    torch.manual_seed(weights_seed)
    checkpoint = folder / f"{arch}-width{width}-random.pth.tar"
    backbones.save_checkpoint(backbones.ResNet(arch, width), checkpoint, "moco_v2")
    return folder / "data", checkpoint


def resolve_inputs(data_root: str = "", checkpoint: str = "") -> tuple[Path, Path]:
    """The data root and checkpoint to use: the given paths, else ``$LPFT_DATA_ROOT`` / ``$LPFT_CHECKPOINT``, else
    ``<repository>/data`` and ``<repository>/checkpoints/moco_v2_800ep_pretrain.pth.tar``."""
    root = data_root or os.environ.get(ENV_DATA_ROOT) or str(ROOT / "data")
    ckpt = checkpoint or os.environ.get(ENV_CHECKPOINT) or str(ROOT / "checkpoints" / "moco_v2_800ep_pretrain.pth.tar")
    return Path(root), Path(ckpt)


def missing_inputs(data_root, checkpoint) -> list[str]:
    """What is missing for a real run (empty when everything is there): one line per absent file."""
    lines = imagedata.missing_files(data_root)
    if not Path(checkpoint).is_file():
        lines.append(f"no checkpoint at {checkpoint}: {backbones.HOW_TO_GET['moco_v2']}")
    return lines


def sweep_from_settings(settings: dict, *, data_root, checkpoint, folder, device: str, seed: int = 0,
                        source: str = "moco_v2") -> Sweep:
    """The :class:`Sweep` of a chapter profile's settings (:data:`lpft.profiles.CHAPTERS`), seeds from ``seed``."""
    keys = {f for f in Sweep.__dataclass_fields__} - {"data_root", "checkpoint", "folder", "device", "seeds", "source"}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in keys}
    return Sweep(data_root=str(data_root), checkpoint=str(checkpoint), folder=str(folder), device=device,
                 source=source, seeds=tuple(range(seed, seed + settings["n_seeds"])), **options)


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"lpft-sweep: --option takes KEY=VALUE; got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def main(argv: list[str] | None = None) -> int:
    from lpft.profiles import CHAPTERS, PROFILES, resolve_device

    parser = argparse.ArgumentParser(prog="lpft-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--data-root", default="", help=f"default: ${ENV_DATA_ROOT} or <repo>/data")
    parser.add_argument("--checkpoint", default="", help=f"default: ${ENV_CHECKPOINT} or <repo>/checkpoints/...")
    parser.add_argument("--source", default="moco_v2", choices=backbones.SOURCES)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--executor", default="inline", choices=EXECUTORS)
    parser.add_argument("--parallel", type=int, default=1, help="local: processes at once; slurm: array parallelism")
    parser.add_argument("--timeout-min", type=int, default=24 * 60)
    parser.add_argument("--slurm-partition", default=None)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a submitit AutoExecutor parameter for slurm, e.g. cpus_per_task=8 or mem_gb=64")
    parser.add_argument("--folder", type=Path, default=None, help="records (default: results/<chapter>/<profile>)")
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")
    args = parser.parse_args(argv)
    data_root, checkpoint = resolve_inputs(args.data_root, args.checkpoint)
    missing = missing_inputs(data_root, checkpoint)
    if missing:
        print("lpft-sweep: missing inputs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    settings = {**CHAPTERS[CHAPTER][args.profile], "progress": args.progress}
    # a Slurm submission host need not have the GPU its jobs will get
    device = ("cuda" if args.device == "auto" else args.device) if args.executor == "slurm" else \
        resolve_device(args.device)
    sweep = sweep_from_settings(settings, data_root=data_root, checkpoint=checkpoint, source=args.source,
                                folder=args.folder or ROOT / "results" / CHAPTER / args.profile, device=device,
                                seed=args.seed)
    options = dict(_option(o) for o in args.option)
    if args.slurm_partition:
        options["slurm_partition"] = args.slurm_partition
    sweep = replace(sweep, slurm=options)
    records = run_sweep(sweep, args.executor, parallel=args.parallel, timeout_min=args.timeout_min)
    print(summarise(records).round(2).to_string())
    print(f"{len(records)} records in {sweep.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


"""Resumable sweeps of one paper-scale experiment: one record per run, run here or on a Slurm cluster (submitit).

A :class:`Sweep` is everything one experiment's table needs (its paper settings come from
:mod:`lpft.scale.experiments`): the data root, the backbone's checkpoint, the LP ``C`` grid, the FT and LP-FT
learning-rate grids, epochs and seeds. It expands into :func:`jobs`: LP (once when there is no augmentation, since it
is then deterministic: ``eval()``-mode features and L-BFGS; once per seed otherwise, each on its own augmented view of
the training images, as the paper's 3 LP seeds, or with its own initialisation and batch order for ImageNet's SGD
probe), and one FT, LP-FT and L2-SP run per (learning rate, seed); LP-FT of seed s starts from LP's head of seed s,
and each FT run also evaluates its WiSE-FT interpolations with seed s's LP model (``wise_alphas``), so WiSE-FT costs
no training. :func:`run_job` runs one of them through :func:`lpft.records.run_once`: a finished run's record (config,
results, versions, git revision) is read back, never recomputed; a run that was killed resumes from its last epoch
checkpoint (``<folder>/checkpoints/``, deleted once the record is written). Records are keyed on the config, the
sha256 of the checkpoint file, a digest of the loaded images and the source of the modules that compute them
(:data:`CODE_MODULES`).

:func:`run_sweep` runs the jobs in two stages (LP, then the rest, which may need its head): ``inline`` in this process
(the default), or through submitit's ``local`` (subprocesses on this machine), ``debug`` (in process) or ``slurm``
executors.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lpft import finetune
from lpft.records import code_fingerprint, digest, record_path, run_once
from lpft.scale import backbones, clip, data, transforms
from lpft.scale import finetune as scale_finetune
from lpft.scale.data.files import content_digest
from lpft.task import Task

CODE_MODULES = ("scale.imagedata", "scale.transforms", "scale.data.__init__", "scale.data.files", "scale.data.cifar",
                "scale.data.breeds", "scale.data.domainnet", "scale.data.fmow", "scale.data.imagenet", "scale.backbones",
                "scale.clip", "scale.finetune", "scale.sweep", "finetune", "task")
EXECUTORS = ("inline", "local", "debug", "slurm")
LP_KINDS = ("logistic", "sgd")


@dataclass(frozen=True)
class Sweep:
    """One experiment's settings and grid, and where its inputs and records live (paths are not part of a run's
    identity). The paper's settings of each experiment are :func:`lpft.scale.experiments.settings`; the defaults
    here are neutral (empty grids)."""
    data_root: str = ""
    checkpoint: str = ""
    folder: str = ""
    experiment: str = "cifar-stl"
    source: str = "moco_v2"
    arch: str = "resnet50"
    width: int | None = None  # None: the architecture's published width
    seeds: tuple = (0, 1, 2)
    Cs: tuple = ()
    ft_lrs: tuple = ()
    lpft_lrs: tuple = ()
    wise_alphas: tuple = ()            # WiSE-FT: interpolations of each FT run with its seed's LP model
    l2sp_lrs: tuple = ()               # L2-SP runs (FT with the penalty), one per (lr, seed)
    l2sp_weight: float = 0.01          # the official code's L2-SP weight (l2sp_experiments)
    epochs: int = 20
    image_size: int = 224
    batch_size: int = 64
    accumulate: int = 1
    augment: str = "none"
    centre_crop: bool = False
    load_size: int | None = None
    n_val: int | None = None           # None: the ID test set doubles as ID-val (the official code)
    lp: str = "logistic"               # LP_KINDS: scikit-learn's logistic regression over Cs, or an SGD probe
    lp_epochs: int = 5                 # the SGD probe's epochs and learning rate (the paper's ImageNet LP)
    lp_lr: float = 0.1
    std: tuple | None = None           # the input normalisation's std (None: the backbone's usual one)
    tower: tuple = ()                  # extra CLIP tower options as (name, value) pairs (tiny test towers)
    cache: str = ""                    # a folder to decode images into once (disk_cache experiments); "": RAM
    max_train: int | None = None
    max_eval: int | None = None
    feature_n: int = 2000
    device: str = "cpu"
    precision: str | None = None      # None: bf16 on a GPU, fp32 on a CPU
    channels_last: bool | None = None  # None: on a GPU only
    progress: bool = False
    slurm: dict = field(default_factory=dict, compare=False, hash=False)

    def runtime(self) -> scale_finetune.Runtime:
        """The training loop's runtime for this sweep: device, precision, batch, transforms and the input
        normalisation (CLIP's for CLIP towers, else ImageNet's, with ``std`` where the paper's configs differ)."""
        options = {k: v for k, v in (("precision", self.precision), ("channels_last", self.channels_last))
                   if v is not None}
        mean, std = (clip.CLIP_MEAN, clip.CLIP_STD) if self.source == "clip" else \
            (transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)
        std = self.std or std
        return scale_finetune.Runtime.for_device(
            self.device, image_size=self.image_size, batch_size=self.batch_size, accumulate=self.accumulate,
            augment=self.augment, centre_crop=self.centre_crop, mean=mean, std=std, progress=self.progress, **options)


# ---- inputs, loaded once per process ------------------------------------------------------------------------------

def tower_options(source: str, image_size: int, tower: tuple = ()) -> dict:
    """Architecture options beyond (arch, width): CLIP towers are built for one input size (fixed positional
    embeddings) and may take ``tower``'s (name, value) options (layers, heads, patch size of tiny test towers);
    ResNets take any size."""
    return {"image_size": image_size, **dict(tower)} if source == "clip" else {}


@functools.lru_cache(maxsize=2)
def _task(data_root: str, experiment: str, n_val, image_size: int, load_size, max_train, max_eval, cache: str
          ) -> tuple[Task, str]:
    task = data.build_task(data_root, experiment, n_val=n_val, image_size=image_size, load_size=load_size,
                           max_train=max_train, max_eval=max_eval, cache=cache)
    parts = (task.train, task.val, task.test_id, *task.ood.values())  # digests known since decoding are reused
    return task, digest(*(part.digest or content_digest(part.x.numpy(), part.y.numpy()) for part in parts))


def load_task(sweep: Sweep) -> tuple[Task, str]:
    """The sweep's task and a digest of all its images and labels."""
    return _task(str(sweep.data_root), sweep.experiment, sweep.n_val, sweep.image_size, sweep.load_size,
                 sweep.max_train, sweep.max_eval, sweep.cache)


@functools.lru_cache(maxsize=2)
def _backbone(checkpoint: str, source: str, arch: str, width: int | None, image_size: int, tower: tuple):
    model = backbones.load_backbone(checkpoint, source, arch, width, **tower_options(source, image_size, tower))
    return model, backbones.file_digest(checkpoint)


def load_backbone(sweep: Sweep) -> tuple[torch.nn.Module, str]:
    """The sweep's pretrained backbone and the sha256 of its checkpoint file."""
    return _backbone(str(sweep.checkpoint), sweep.source, sweep.arch, sweep.width, sweep.image_size, sweep.tower)


@functools.lru_cache(maxsize=2)
def _pretrained_features(sweep: Sweep) -> tuple[dict, dict]:
    task, _ = load_task(sweep)
    backbone, _ = load_backbone(sweep)
    rt = sweep.runtime()
    sets = scale_finetune.evaluation_sets(task, sweep.feature_n)
    return sets, {name: finetune.features(backbone, data, rt) for name, data in sets.items()}


# ---- the jobs -----------------------------------------------------------------------------------------------------

def lp_job(sweep: Sweep, seed: int) -> dict:
    """The LP run whose head LP-FT of ``seed`` starts from: the one LP run when LP is deterministic (logistic
    regression without augmentation), else seed's own."""
    deterministic = sweep.augment == "none" and sweep.lp == "logistic"
    return {"method": "LP"} if deterministic else {"method": "LP", "seed": seed}


def jobs(sweep: Sweep) -> list[dict]:
    """Every run of the sweep: LP (once, or once per seed with augmentation), then FT (each also evaluating its WiSE-FT
    interpolations), LP-FT and L2-SP per (learning rate, seed)."""
    out = list({str(j): j for j in (lp_job(sweep, s) for s in sweep.seeds)}.values())
    for method, lrs in (("FT", sweep.ft_lrs), ("LP-FT", sweep.lpft_lrs), ("L2-SP", sweep.l2sp_lrs)):
        out += [{"method": method, "lr": lr, "seed": s} for lr in lrs for s in sweep.seeds]
    return out


def job_config(sweep: Sweep, job: dict) -> dict:
    """What identifies a run's result: the method and its hyperparameters, the seed, and the inputs by content."""
    _, data_digest = load_task(sweep)
    _, weights = load_backbone(sweep)
    rt = sweep.runtime()
    common = {"experiment": sweep.experiment, "data": {"digest": data_digest, "n_val": sweep.n_val,
                                                       "max_train": sweep.max_train, "max_eval": sweep.max_eval},
              "backbone": {"source": sweep.source, "arch": sweep.arch, "width": sweep.width, "sha256": weights,
                           **({"tower": [list(kv) for kv in sweep.tower]} if sweep.tower else {})},
              "image_size": sweep.image_size, "feature_n": sweep.feature_n,
              "transform": {"augment": sweep.augment, "centre_crop": sweep.centre_crop, "load_size": sweep.load_size,
                            "mean": list(rt.mean), "std": list(rt.std)}}
    if sweep.lp not in LP_KINDS:
        raise ValueError(f"lp must be one of {LP_KINDS}; got {sweep.lp!r}")
    lp = {"Cs": [float(c) for c in sweep.Cs], "max_iter": scale_finetune.LP_MAX_ITER} if sweep.lp == "logistic" else \
        {"kind": "sgd", "epochs": sweep.lp_epochs, "lr": float(sweep.lp_lr), "batch_size": sweep.batch_size}
    training = {"epochs": sweep.epochs, "batch_size": sweep.batch_size, "precision": rt.precision,
                "accumulate": sweep.accumulate}
    if job["method"] == "LP":
        return {"method": "LP", "common": common, "lp": lp, **({"seed": int(job["seed"])} if "seed" in job else {})}
    if job["method"] not in ("FT", "LP-FT", "L2-SP"):
        raise ValueError(f"method must be LP, FT, LP-FT or L2-SP; got {job['method']!r}")
    config = {"method": job["method"], "common": common, "training": training, "lr": float(job["lr"]),
              "seed": int(job["seed"])}
    if job["method"] == "L2-SP":
        return {**config, "weight": float(sweep.l2sp_weight)}
    if job["method"] == "FT" and sweep.wise_alphas:
        return {**config, "lp": lp, "wise_alphas": [float(a) for a in sweep.wise_alphas]}
    return {**config, "lp": lp} if job["method"] == "LP-FT" else config


def job_name(job: dict) -> str:
    if job["method"] == "LP":
        return "LP" if job.get("seed") is None else f"LP-seed{job['seed']}"
    return f"{job['method']}-lr{job['lr']:g}-seed{job['seed']}"


def probe_of(record: dict) -> finetune.Probe:
    """The LP head stored in an LP record."""
    r = record["results"]
    return finetune.Probe(r["C"], np.array(r["head"]["W"]), np.array(r["head"]["b"]), r["grid"])


def run_job(sweep: Sweep, job: dict, on_epoch_end=None) -> dict:
    """The record of one run of ``sweep`` (read back if finished; otherwise computed, resuming from its epoch
    checkpoint if one exists). ``on_epoch_end(epoch)`` is passed to the training loop (tests interrupt runs with it)."""
    torch.set_num_threads(int(os.environ.get("LPFT_TORCH_THREADS", "1")))
    config = job_config(sweep, job)
    name, code = job_name(job), code_fingerprint(CODE_MODULES)
    folder = Path(sweep.folder)
    checkpoint = folder / "checkpoints" / f"{record_path(folder, config, name, code).stem}.pt"

    def compute() -> dict:
        start = time.perf_counter()
        task, _ = load_task(sweep)
        backbone, _ = load_backbone(sweep)
        rt = sweep.runtime()
        if job["method"] == "LP":
            out = _linear_probe(task, backbone, sweep, rt, job.get("seed"))
        else:
            def seed_probe() -> finetune.Probe:  # the head LP-FT starts from and WiSE-FT interpolates with
                return probe_of(run_job(sweep, lp_job(sweep, job["seed"])))

            sets, before = _pretrained_features(sweep)
            options = {"lr": job["lr"], "epochs": sweep.epochs, "seed": job["seed"], "feed": rt,
                       "checkpoint": checkpoint, "on_epoch_end": on_epoch_end, "desc": name}
            if job["method"] == "FT":
                model, info = finetune.fine_tune(backbone, task, **options)
            elif job["method"] == "L2-SP":
                model, info = finetune.l2_sp(backbone, task, weight=sweep.l2sp_weight, **options)
            else:
                model, info = finetune.lp_ft(finetune.with_probe_head(backbone, seed_probe()), task, **options)
            out = {**scale_finetune.evaluate(model, task, rt, before, sets), **info}
            if job["method"] == "FT" and sweep.wise_alphas:
                lp_model = finetune.with_probe_head(backbone, seed_probe())
                out["wise"] = {f"{a:g}": scale_finetune.evaluate(finetune.wise_ft(lp_model, model, a), task, rt,
                                                                   before, sets) for a in sweep.wise_alphas}
        device = torch.cuda.get_device_name(0) if torch.device(sweep.device).type == "cuda" else "cpu"
        return {**out, "seconds": round(time.perf_counter() - start, 1), "device": device,
                "paths": {"data_root": str(sweep.data_root), "checkpoint": str(sweep.checkpoint)}}

    record = run_once(folder, config, compute, name=name, code=code)
    checkpoint.unlink(missing_ok=True)
    return record


def _linear_probe(task, backbone, sweep: Sweep, rt, seed: int | None) -> dict:
    """LP's run: features of ID train (one augmented view per image, drawn from ``seed``, when the experiment
    augments), ID-val, ID test and OOD sets; the C sweep (or the SGD probe of ``seed``); accuracies and the head."""
    boxes = None if seed is None else rt.crops(task.train, transforms.augmentation_generator(seed, 2))
    f = {"train": finetune.features(backbone, task.train, rt, boxes)}
    f.update({name: finetune.features(backbone, data, rt)
              for name, data in (("val", task.val), ("id", task.test_id), *task.ood.items())})
    if sweep.lp == "sgd":
        probe = scale_finetune.sgd_probe(f["train"], task.train.y, f["val"], task.val.y, task.n_classes,
                                         epochs=sweep.lp_epochs, lr=sweep.lp_lr, batch_size=sweep.batch_size,
                                         seed=seed or 0, device=rt.device, progress=rt.progress)
    else:
        probe = finetune.logistic_probe(f["train"], task.train.y, sweep.Cs, task.n_classes, f_val=f["val"],
                                        y_val=task.val.y, max_iter=scale_finetune.LP_MAX_ITER, progress=rt.progress)
    return {"C": probe.C, "grid": probe.table, "val": probe.accuracy(f["val"], task.val.y),
            "id": probe.accuracy(f["id"], task.test_id.y),
            "ood": {name: probe.accuracy(f[name], data.y, data.classes) for name, data in task.ood.items()},
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
    """Every record of ``sweep``, running the missing runs: LP first, then the runs that start from or interpolate
    with its head (FT with WiSE-FT, LP-FT) and the others (L2-SP). ``executor`` is one of
    :data:`EXECUTORS`: ``inline`` (this process, one run after another), or submitit's ``local`` (at most ``parallel``
    subprocesses at a time), ``debug`` (in process) or ``slurm`` (a job array per stage; ``sweep.slurm`` holds the
    ``slurm_*`` options such as ``slurm_partition``; ``parallel`` caps the array's concurrency)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}; got {executor!r}")
    all_jobs = jobs(sweep)
    stages = [[j for j in all_jobs if j["method"] == "LP"], [j for j in all_jobs if j["method"] != "LP"]]
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



"""Resumable sweeps of the paper-scale experiments: one record per run, run here or on a Slurm cluster (submitit).

An :class:`Experiment` is one family of columns of the paper's Tables 1-2 (datasets: the paper's Section 4; settings:
the official code's ``configs/adaptation/*.yaml`` and ``scripts/run_adaptation_experiments.py``, in
github.com/AnanyaKumar/transfer_learning): CIFAR-10 → STL-10 / CIFAR-10.1, BREEDS Living-17 and Entity-30, DomainNet, FMoW geo-shift, ImageNet → V2 / R / Sketch / A; it
fixes the data, the paper's backbone and its weights file, its training settings, augmentation and learning-rate
grids. A :class:`Sweep` is everything one experiment's table needs: the data root, the backbone's
checkpoint, the LP ``C`` grid, the FT and LP-FT learning-rate grids, epochs and seeds. It expands into :func:`jobs`:
LP (once when there is no augmentation, since it is then deterministic: ``eval()``-mode features and L-BFGS; once per
seed otherwise, each on its own augmented view of the training images, as the paper's 3 LP seeds, or with its own
initialisation and batch order for ImageNet's SGD probe), and one FT, LP-FT
and L2-SP run per (learning rate, seed); LP-FT of seed s starts from LP's head of seed s, and each FT run also
evaluates its WiSE-FT interpolations with seed s's LP model (``wise_alphas``), so WiSE-FT costs no training. :func:`run_job` runs one of them
through :func:`lpft.records.run_once`: a finished run's record (config, results, versions, git revision) is read back,
never recomputed; a run that was killed resumes from its last epoch checkpoint (``<folder>/checkpoints/``, deleted
once the record is written). Records are keyed on the config, the sha256 of the checkpoint file, a digest of the
loaded images and the source of the modules that compute them (:data:`CODE_MODULES`).

:func:`run_sweep` runs the jobs in two stages (LP, then the rest, which may need its head): ``inline`` in
this process (the default), or through submitit's ``local`` (subprocesses on this machine), ``debug`` (in process)
or ``slurm`` executors. :func:`summarise` selects each method's learning rate by mean ID-val accuracy over seeds
(early stopping already picked each run's epoch) and reports mean and 90% interval over seeds.

The command line runs a sweep without the chapter (e.g. on a cluster); the chapter then reads the same records::

    lpft-sweep --experiment living17 --profile full --data-root /data \\
        --checkpoint /weights/moco_v2_800ep_pretrain.pth.tar --device cuda --executor slurm --slurm-partition gpu
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpft import finetune, report
from lpft.records import code_fingerprint, record_path, run_once
from lpft.scale import backbones, clip, filelists, imagedata, imagenet
from lpft.scale import finetune as scale_finetune
from lpft.book.paths import ROOT
from lpft.protocol import interval90
from lpft.task import Task

CODE_MODULES = ("scale.imagedata", "scale.filelists", "scale.imagenet", "scale.backbones", "scale.clip", "scale.finetune",
                "scale.launch", "finetune", "task")
EXECUTORS = ("inline", "local", "debug", "slurm")
ENV_DATA_ROOT, ENV_CACHE = "LPFT_DATA_ROOT", "LPFT_CACHE"
# The pretrained weights of the paper's runs (its Section 4: MoCo-v2, CLIP, MoCo-TP): their checkpoint format (a
# backbones.SOURCES entry), the file's usual name and the environment variable that may give its path.
WEIGHTS = {
    "moco_v2": ("moco_v2", "moco_v2_800ep_pretrain.pth.tar", "LPFT_CHECKPOINT"),
    "torchvision": ("torchvision", "resnet50-0676ba61.pth", "LPFT_CHECKPOINT"),
    "moco_tp": ("moco_v2", "mocotp_checkpoint_0200.pth.tar", "LPFT_MOCOTP_CHECKPOINT"),
    "clip_rn50": ("clip", "RN50.pt", "LPFT_CLIP_CHECKPOINT"),
    "clip_vit_b16": ("clip", "ViT-B-16.pt", "LPFT_CLIP_VIT_CHECKPOINT"),
}
HOW_TO_GET_MOCO_TP = ("download the MoCo-TP ResNet-50 pretrained on FMoW (Ayush et al., geography-aware "
                      "self-supervised learning), mocotp_checkpoint_0200.pth.tar, from the LP-FT authors' CodaLab bundle "
                      "0x57abca4a55ec4f7e9908098beb2633c6 (https://worksheets.codalab.org/bundles/"
                      "0x57abca4a55ec4f7e9908098beb2633c6; see issue #4 of github.com/AnanyaKumar/transfer_learning); "
                      "it is in MoCo-v2's checkpoint format")
GRIDS = {  # the official code's learning-rate grids (scripts/run_adaptation_experiments.py, April 2022 release)
    "ft": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "lpft": (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4),
    "imagenet ft": (1e-4, 3e-4, 1e-3), "imagenet lpft": (1e-5, 3e-5, 1e-4)}
LP_KINDS = ("logistic", "sgd")
# The input normalisation's std in the paper's CIFAR-10 -> STL-10 and BREEDS configs, taken from SwAV's fine-tuning
# script: 0.228 for red where torchvision (and MoCo's pretraining) use 0.229. FMoW's config trains with 0.2289 and
# evaluates with 0.229; its runs here use 0.229 throughout.
PAPER_STD = (0.228, 0.224, 0.225)


@dataclass(frozen=True)
class Experiment:
    """One family of columns of the paper's Tables 1-2 (see the module docstring for sources): the book chapter that shows it, its ID
    column, which summary column fills which OOD column (``"OOD mean"``: the mean over the task's OOD sets, as the
    paper's DomainNet number), the paper's backbone (``weights``: a :data:`WEIGHTS` name), training settings,
    transforms and learning-rate grids (L2-SP: FT's). ``load_size``: the size images are stored at before the
    transforms (None: the files' own); ``n_val``: ID-val held out of ID train (None: the ID test set doubles as ID-val,
    as in all the paper's runs: its code early-stops and selects on the ID test set); ``lp``:
    :func:`~lpft.finetune.logistic_probe` ("logistic") or ImageNet's :func:`~lpft.scale.finetune.sgd_probe` ("sgd"); ``disk_cache``: decode the images once
    into a disk cache instead of RAM (:func:`lpft.scale.filelists.decode_set`; ImageNet's training set is about 193 GB as
    uint8 at 224 px, Entity-30's 30 GB at 256 px); ``std``: the input normalisation's std, where the official configs
    differ from the backbone's usual one (:data:`PAPER_STD`; None: the usual)."""
    chapter: str
    id_set: str
    paper_ood: dict
    source: str = "moco_v2"
    arch: str = "resnet50"
    epochs: int = 20
    batch_size: int = 64
    accumulate: int = 1
    augment: str = "none"
    centre_crop: bool = False
    load_size: int | None = None
    n_val: int | None = None
    weights: str = "moco_v2"
    lp: str = "logistic"
    ft_lrs: tuple = GRIDS["ft"]
    lpft_lrs: tuple = GRIDS["lpft"]
    l2sp_lrs: tuple = GRIDS["ft"]
    disk_cache: bool = False
    std: tuple | None = None


_BREEDS = dict(augment="random-resized-crop", centre_crop=True, load_size=256, disk_cache=True, std=PAPER_STD)
EXPERIMENTS = {
    "cifar-stl": Experiment("experiments-cifar-stl", "CIFAR-10", {"OOD STL-10": "STL-10", "OOD CIFAR-10.1": "CIFAR-10.1"},
                            std=PAPER_STD),
    "living17": Experiment("experiments-breeds-domainnet", "Living-17", {"OOD Living-17 target": "Living-17"}, **_BREEDS),
    "entity30": Experiment("experiments-breeds-domainnet", "Entity-30", {"OOD Entity-30 target": "Entity-30"}, **_BREEDS),
    "domainnet": Experiment("experiments-breeds-domainnet", "DomainNet", {"OOD mean": "DomainNet"}, source="clip",
                            arch="RN50", epochs=50, batch_size=32, accumulate=2, augment="random-crop", load_size=256,
                            weights="clip_rn50"),
    "fmow": Experiment("experiments-fmow-imagenet", "FMoW", {"OOD Africa": "FMoW"}, epochs=50, weights="moco_tp"),
    "imagenet": Experiment("experiments-fmow-imagenet", "ImageNet",
                           {f"OOD {k}": k for k in ("ImageNetV2", "ImageNet-R", "ImageNet-Sketch", "ImageNet-A")},
                           source="clip", arch="ViT-B-16", epochs=10, batch_size=128,
                           weights="clip_vit_b16", lp="sgd", ft_lrs=GRIDS["imagenet ft"],
                           lpft_lrs=GRIDS["imagenet lpft"], l2sp_lrs=GRIDS["imagenet ft"], disk_cache=True),
}


def experiment_of(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {list(EXPERIMENTS)}")
    return EXPERIMENTS[name]


@dataclass(frozen=True)
class Sweep:
    """One experiment's grid and where its inputs and records live (paths are not part of a run's identity)."""
    data_root: str
    checkpoint: str
    folder: str
    source: str = "moco_v2"
    arch: str = "resnet50"
    width: int | None = None  # None: the architecture's published width
    experiment: str = "cifar-stl"
    seeds: tuple = (0, 1, 2)
    Cs: tuple = tuple(float(c) for c in np.logspace(-7, 2, 50))
    ft_lrs: tuple = GRIDS["ft"]
    lpft_lrs: tuple = GRIDS["lpft"]
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
        options = {k: v for k, v in (("precision", self.precision), ("channels_last", self.channels_last))
                   if v is not None}
        mean, std = (clip.CLIP_MEAN, clip.CLIP_STD) if self.source == "clip" else \
            (imagedata.IMAGENET_MEAN, imagedata.IMAGENET_STD)
        std = self.std or std
        return scale_finetune.Runtime.for_device(
            self.device, image_size=self.image_size, batch_size=self.batch_size, accumulate=self.accumulate,
            augment=self.augment, centre_crop=self.centre_crop, mean=mean, std=std, progress=self.progress, **options)


# ---- inputs, loaded once per process ------------------------------------------------------------------------------

def _tower_options(source: str, image_size: int, tower: tuple = ()) -> dict:
    """Architecture options beyond (arch, width): CLIP towers are built for one input size (fixed positional
    embeddings) and may take ``tower``'s (name, value) options (layers, heads, patch size of tiny test towers);
    ResNets take any size."""
    return {"image_size": image_size, **dict(tower)} if source == "clip" else {}


def build_task(data_root, experiment: str, *, n_val: int | None, image_size: int, load_size: int | None,
               max_train: int | None = None, max_eval: int | None = None, cache: str = "") -> Task:
    """The :class:`~lpft.task.Task` of ``experiment`` from its files under ``data_root`` (layouts in
    :mod:`lpft.scale.imagedata`, :mod:`lpft.scale.filelists` and :mod:`lpft.scale.imagenet`), capped to ``max_train`` / ``max_eval``
    images for smoke runs; with ``cache`` (a folder), images are decoded once into a memory-mapped disk cache there
    instead of RAM (:func:`lpft.scale.filelists.decode_set`)."""
    experiment_of(experiment)
    cache_dir = cache or None
    if experiment == "imagenet":
        if n_val is not None:
            raise ValueError("imagenet uses ImageNet val as ID-val (the paper's early stopping): n_val must be None")
        return imagenet.imagenet_task(data_root, size=image_size, cache_dir=cache_dir, max_train=max_train,
                                      max_eval=max_eval)
    if experiment == "fmow":
        task = filelists.fmow_task(filelists.fmow_path(data_root), size=load_size or image_size, n_val=n_val,
                                   cache_dir=cache_dir)
        return task.capped(max_train, max_eval)
    if experiment == "cifar-stl":
        return imagedata.cifar_task(data_root, ood=("STL-10", "CIFAR-10.1"), n_val=n_val, max_train=max_train,
                                    max_eval=max_eval)
    if experiment in filelists.BREEDS_NAMES:
        folder, split = filelists.breeds_paths(data_root, experiment)
        task = filelists.breeds_task(folder, split, name=filelists.BREEDS_NAMES[experiment],
                                     size=load_size or image_size, n_val=n_val, cache_dir=cache_dir)
    else:
        root, lists = filelists.domainnet_paths(data_root)
        task = filelists.domainnet_task(root, lists, size=image_size, train_size=load_size, n_val=n_val,
                                        cache_dir=cache_dir)
    return task.capped(max_train, max_eval)


@functools.lru_cache(maxsize=2)
def _task(data_root: str, experiment: str, n_val, image_size: int, load_size, max_train, max_eval, cache: str
          ) -> tuple[Task, str]:
    task = build_task(data_root, experiment, n_val=n_val, image_size=image_size, load_size=load_size,
                      max_train=max_train, max_eval=max_eval, cache=cache)
    h = hashlib.sha256()
    for part in (task.train, task.val, task.test_id, *task.ood.values()):  # digests known since decoding are reused
        h.update((part.digest or filelists.content_digest(part.x.numpy(), part.y.numpy())).encode())
    return task, h.hexdigest()[:16]


def load_task(sweep: Sweep) -> tuple[Task, str]:
    """The sweep's task and a digest of all its images and labels."""
    return _task(str(sweep.data_root), sweep.experiment, sweep.n_val, sweep.image_size, sweep.load_size,
                 sweep.max_train, sweep.max_eval, sweep.cache)


@functools.lru_cache(maxsize=2)
def _backbone(checkpoint: str, source: str, arch: str, width: int | None, image_size: int, tower: tuple):
    model = backbones.load_backbone(checkpoint, source, arch, width, **_tower_options(source, image_size, tower))
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
    boxes = None if seed is None else rt.crops(task.train, imagedata.augmentation_generator(seed, 2))
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


# ---- reading the records back -------------------------------------------------------------------------------------

METHODS = ("LP", "FT", "LP-FT", "WiSE-FT", "L2-SP")


def _row(method: str, c: dict, r: dict, spec: Experiment, alpha: float = float("nan")) -> dict:
    change = r["feature_change"]
    ood = {f"OOD {k}": 100 * r["ood"][k] for k in sorted(r["ood"])}
    if "OOD mean" in spec.paper_ood:
        ood["OOD mean"] = float(np.mean(list(ood.values())))
    return {"method": method, "lr": c.get("lr", float("nan")), "alpha": alpha, "seed": c.get("seed", -1),
            "val": 100 * r["val"], "ID": 100 * r["id"], **ood,
            **{f"change {k}": change[k] for k in ["ID", *sorted(set(change) - {"ID"})]},
            "best_epoch": r.get("best_epoch", 0), "seconds": r.get("seconds", 0.0)}


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: method, lr, WiSE-FT's alpha, seed, ID-val / ID test / OOD accuracies (%), the mean over OOD
    sets where the experiment reports it (DomainNet), feature change, best epoch, seconds. Each FT record also gives
    one WiSE-FT row per alpha (its interpolation with the LP model; its time is the FT run's)."""
    rows = []
    for record in records:  # OOD sets in a fixed (sorted) order: records read back from JSON have sorted keys
        c, r = record["config"], record["results"]
        spec = experiment_of(c.get("common", {}).get("experiment", "cifar-stl"))
        rows.append(_row(c["method"], c, r, spec))
        for alpha, w in sorted(r.get("wise", {}).items(), key=lambda kv: float(kv[0])):
            rows.append(_row("WiSE-FT", c, {**w, "best_epoch": r.get("best_epoch", 0)}, spec, float(alpha)))
    return pd.DataFrame(rows)


def select(table: pd.DataFrame) -> pd.DataFrame:
    """The runs each method reports: FT, LP-FT and L2-SP at the learning rate with the best mean ID-val accuracy over
    seeds (the first in grid order on ties), as the paper's Section 4.1 selects on ID validation, and WiSE-FT at the
    best (learning rate, alpha); LP's runs (one, or one per seed)."""
    keep = [table[table["method"] == "LP"]]
    for method in METHODS[1:]:
        t = table[table["method"] == method]
        if len(t):
            keys = ["lr", "alpha"] if method == "WiSE-FT" else ["lr"]
            best = t.groupby(keys, sort=False)["val"].mean().idxmax()
            best = best if isinstance(best, tuple) else (best,)
            keep.append(t[np.logical_and.reduce([t[k] == v for k, v in zip(keys, best)])])
    return pd.concat(keep, ignore_index=True)


def summarise(records: list[dict]) -> pd.DataFrame:
    """Per method (:data:`METHODS` that ran): the selected learning rate (and WiSE-FT's alpha), number of seeds, and
    mean and 90% interval over seeds of every accuracy and feature-change column (interval 0 for a single
    deterministic LP run)."""
    chosen = select(runs_table(records))
    values = [c for c in chosen.columns if c in ("val", "ID") or c.startswith(("OOD ", "change "))]
    rows = []
    for method in METHODS:
        t = chosen[chosen["method"] == method]
        if not len(t):
            continue
        row = {"method": method, "lr": t["lr"].iloc[0], "alpha": t["alpha"].iloc[0], "seeds": len(t)}
        for col in values:
            row[col] = t[col].mean()
            row[f"{col} ±"] = interval90(t[col]) if len(t) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def compare_with_paper(summary: pd.DataFrame, experiment: str = "cifar-stl") -> pd.DataFrame:
    """This run's accuracies next to the paper's (Tables 1-2, :mod:`lpft.paper`, with its ``checked`` column: the
    submission's table a cell was checked against, or "not checked against any text") and the difference, one row
    per (set, split, method)."""
    from lpft import paper

    spec = experiment_of(experiment)
    ours = {(spec.id_set, "ID"): "ID", **{(col, "OOD"): ours for ours, col in spec.paper_ood.items()}}
    table = paper.table(list(ours))
    column = [ours[(s, split)] for s, split in zip(table["set"], table["split"])]
    table["this run"] = [summary.loc[m, c] if m in summary.index else float("nan")
                         for c, m in zip(column, table["method"])]
    table["this run ±"] = [summary.loc[m, f"{c} ±"] if m in summary.index else float("nan")
                           for c, m in zip(column, table["method"])]
    table["difference"] = table["this run"] - table["paper"]
    return table


def feature_change_long(runs: pd.DataFrame) -> pd.DataFrame:
    """The feature change of every method but LP (which keeps the pretrained features) at its selected
    hyperparameters, one row per (run, inputs)."""
    chosen = select(runs)
    changes = [c for c in chosen.columns if c.startswith("change ")]
    long = chosen[chosen["method"] != "LP"].melt(id_vars=["method", "lr", "alpha", "seed"], value_vars=changes,
                                                 var_name="inputs", value_name="change")
    long["inputs"] = long["inputs"].str.removeprefix("change ")
    return long


def lr_table(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Mean ID-val, ID and OOD accuracy over seeds of every trained method (FT, LP-FT, L2-SP) at every learning rate
    of its grid (OOD: ``experiment``'s paper columns), rounded to 0.1."""
    cols = ["val", "ID", *experiment_of(experiment).paper_ood]
    trained = runs[runs["method"].isin(["FT", "LP-FT", "L2-SP"])]
    return trained.groupby(["method", "lr"])[cols].mean().round(1)


def methods_table(summary: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Every method of this run on ``experiment``'s paper columns, as printed: selected learning rate (and WiSE-FT's
    alpha), seeds, ID-val accuracy, ID and OOD accuracy as "mean ± 90% interval" (one ``OOD`` column where the
    experiment has one OOD number, else one per set), and the feature change on ID inputs."""
    spec = experiment_of(experiment)
    ood = {col: "OOD" if len(spec.paper_ood) == 1 else col for col in spec.paper_ood}
    out = pd.DataFrame({"lr": [report.fmt(x) for x in summary["lr"]],
                        "alpha": ["" if np.isnan(a) else f"{a:g}" for a in summary["alpha"]],
                        "seeds": summary["seeds"], "val": [f"{v:.1f}" for v in summary["val"]]}, index=summary.index)
    for col, name in {"ID": "ID", **ood}.items():
        out[name] = [f"{m:.1f} ± {pm:.1f}" for m, pm in zip(summary[col], summary[f"{col} ±"])]
    out["change ID"] = [report.fmt(c, floor=0.0) for c in summary["change ID"]]
    return out


def orderings(summary: pd.DataFrame | None, experiment: str) -> pd.DataFrame:
    """The paper's comparisons for ``experiment`` (FT vs LP out of and in distribution, LP-FT vs FT out of
    distribution), whether the paper's Tables 1-2 show them, and whether this run (``summary``; None: not run) does."""
    from lpft import paper

    spec = experiment_of(experiment)
    ood = {f"{col} ({spec.paper_ood[col]})" if col == "OOD mean" else col: pc for col, pc in spec.paper_ood.items()}
    checks = [(f"LP > FT on {label}", col, "OOD", "LP", "FT") for label, col in zip(ood, spec.paper_ood)]
    checks += [(f"LP-FT > FT on {label}", col, "OOD", "LP-FT", "FT") for label, col in zip(ood, spec.paper_ood)]
    checks += [(f"FT > LP on ID ({spec.id_set})", "ID", "ID", "FT", "LP")]
    rows = []
    for label, col, split, a, b in checks:
        name = spec.id_set if split == "ID" else spec.paper_ood[col]
        source = paper.ID_ACCURACY if split == "ID" else paper.OOD_ACCURACY
        ours = "not run" if summary is None else ("yes" if summary.loc[a, col] > summary.loc[b, col] else "no")
        rows.append({"experiment": experiment, "comparison": label,
                     "paper": "yes" if source[name][a][0] > source[name][b][0] else "no", "this run": ours})
    return pd.DataFrame(rows)


@dataclass
class ChapterInputs:
    """What one experiment of a paper-scale chapter runs on: its data root and checkpoint, and what is missing."""
    experiment: str
    data_root: Path
    checkpoint: Path
    source: str
    missing: list

    @property
    def ran(self) -> bool:
        return not self.missing


def chapter_inputs(experiment: str, settings: dict, scratch, *, data_root: str = "", checkpoint: str = "",
                   source: str | None = None) -> ChapterInputs:
    """``experiment``'s inputs in a chapter: in a profile with ``synthetic`` settings, generated files written under
    ``scratch`` (:func:`write_quick_inputs`); otherwise the given paths or their defaults (:func:`resolve_inputs`)
    and the list of what is missing there."""
    source = source or experiment_of(experiment).source
    if settings.get("synthetic"):
        root, ckpt = write_quick_inputs(Path(scratch) / experiment, settings, experiment)
        return ChapterInputs(experiment, root, ckpt, source, [])
    root, ckpt = resolve_inputs(data_root, checkpoint, source, experiment)
    return ChapterInputs(experiment, root, ckpt, source, missing_inputs(root, ckpt, experiment, source))


def chapter_sweeps(cfg, scratch, *, data_root: str = "", checkpoints: dict | None = None
                   ) -> tuple[dict[str, ChapterInputs], dict[str, Sweep]]:
    """The inputs and sweeps of a chapter that runs several experiments (``cfg.experiments``, from
    :func:`lpft.start_chapter`): each experiment's inputs (:func:`chapter_inputs`; ``checkpoints`` maps a
    :data:`WEIGHTS` name to a path given as a chapter parameter, "" for the default) and, where they are all there,
    its :class:`Sweep` with records in :func:`records_folder`."""
    settings, checkpoints = vars(cfg), checkpoints or {}
    inputs, sweeps = {}, {}
    for name in cfg.experiments:
        spec = experiment_of(name)
        inputs[name] = chapter_inputs(name, settings, scratch, data_root=data_root,
                                      checkpoint=checkpoints.get(spec.weights, ""))
        if inputs[name].ran:
            sweeps[name] = sweep_from_settings(settings, data_root=inputs[name].data_root,
                                               checkpoint=inputs[name].checkpoint, experiment=name,
                                               folder=records_folder(name, cfg.profile), device=cfg.device,
                                               seed=cfg.seed)
    return inputs, sweeps


def chapter_plan(sweeps: dict[str, Sweep]) -> tuple[str, pd.DataFrame]:
    """What a chapter's sweeps will run (one line per experiment: how many LP, FT and LP-FT runs) and the sizes of
    every set they read (one row per (experiment, set))."""
    lines = "\n".join(f"{name}: {len(jobs(sw))} runs: LP × {len({str(lp_job(sw, s)) for s in sw.seeds})}, FT and LP-FT"
                      f" at {len(sw.ft_lrs)} and {len(sw.lpft_lrs)} learning rates × {len(sw.seeds)} seeds"
                      for name, sw in sweeps.items())
    sizes = pd.concat({name: pd.Series(load_task(sw)[0].sizes) for name, sw in sweeps.items()}).rename("images")
    return lines, sizes.to_frame()


def example_rows(sweeps: dict[str, Sweep]) -> list:
    """``(label, ImageSet)`` of each experiment's ID test set and OOD sets, for :func:`lpft.book.plotting.example_images`."""
    rows = []
    for name, sw in sweeps.items():
        task = load_task(sw)[0]
        rows += [(f"{name}: ID test", task.test_id), *((f"{name}: OOD {k}", v) for k, v in task.ood.items())]
    return rows


def chapter_runs(sweeps: dict[str, Sweep]) -> tuple[dict, dict, dict, str]:
    """Every record of a chapter's sweeps (running what is missing, reading back what is finished), with each
    experiment's :func:`summarise` and :func:`runs_table`, and one line per experiment: its records' folder and their
    summed compute time."""
    records = {name: run_sweep(sw) for name, sw in sweeps.items()}
    summaries = {name: summarise(r) for name, r in records.items()}
    tables = {name: runs_table(r) for name, r in records.items()}
    lines = "\n".join(f"{name}: {len(records[name])} records in {sw.folder.replace(str(ROOT) + '/', '')}; compute time "
                      f"summed over runs: elapsed: {sum(r['results']['seconds'] for r in records[name]):.1f} s"
                      for name, sw in sweeps.items())
    return records, summaries, tables, lines


def chapter_compare(experiments, summaries: dict) -> pd.DataFrame:
    """:func:`compare_with_paper` of every experiment that ran, and the paper's numbers alone for the others."""
    from lpft import paper

    return pd.concat([compare_with_paper(summaries[name], name) if name in summaries else
                      paper.table([(experiment_of(name).id_set, "ID"),
                                   *((c, "OOD") for c in experiment_of(name).paper_ood.values())])
                      for name in experiments], ignore_index=True)


def chapter_orderings(experiments, summaries: dict) -> tuple[pd.DataFrame, int, int]:
    """:func:`orderings` of every experiment, with how many comparisons this run agrees with the paper on and how
    many it could make (those of the experiments that ran)."""
    orders = pd.concat([orderings(summaries.get(name), name) for name in experiments], ignore_index=True)
    made = orders[orders["this run"] != "not run"]
    return orders, int((made["paper"] == made["this run"]).sum()), len(made)


def describe(inputs: ChapterInputs, sweep: Sweep | None, profile: str) -> str:
    """One paragraph for the chapter's first output: what this experiment ran on, or what is missing and the command
    that runs it once the files are there."""
    spec = experiment_of(inputs.experiment)
    if not inputs.ran:
        return (f"{inputs.experiment}: FULL PROFILE WITHOUT INPUTS, nothing was run; the tables show only the paper's "
                f"numbers. Missing:\n  " + "\n  ".join(inputs.missing) +
                f"\n  To run it, put the files there and run:\n  {full_command(inputs.experiment)}")
    shape = (f"{sweep.arch} (width {sweep.width or 'as published'}), {sweep.image_size} px inputs, {sweep.epochs} "
             f"epochs, batch {sweep.batch_size}{f' as {sweep.accumulate} micro-batches' if sweep.accumulate > 1 else ''}"
             f", {len(sweep.seeds)} seeds, augmentation: {sweep.augment}"
             f"{f', LP by SGD ({sweep.lp_epochs} epochs)' if sweep.lp == 'sgd' else ''}, on {sweep.device}")
    if profile == "quick":
        return (f"{inputs.experiment}: QUICK PROFILE (smoke test): generated images in the {spec.id_set} file layout "
                f"and a random-weight {shape}, saved as a {inputs.source} checkpoint. The code path is the full "
                f"profile's; the numbers are not results about {spec.id_set}.")
    return (f"{inputs.experiment}: FULL PROFILE: {inputs.checkpoint.name} ({inputs.source}), {shape}" +
            (" (a CPU: expect days; this profile is meant for a GPU)." if sweep.device == "cpu" else "."))


# ---- settings and the command line --------------------------------------------------------------------------------

def weights_of(experiment: str, source: str | None = None) -> tuple[str, str]:
    """``(usual file name, environment variable)`` of the checkpoint ``experiment`` runs from: the paper's weights
    (:data:`WEIGHTS`), or with another ``source``, that format's usual file."""
    spec = experiment_of(experiment)
    if source is None or source == spec.source:
        return WEIGHTS[spec.weights][1:]
    weights = {"clip": "clip_rn50"}.get(source, source)
    if weights not in WEIGHTS:
        raise ValueError(f"unknown checkpoint source {source!r}; known: {backbones.SOURCES}")
    return WEIGHTS[weights][1:]


def full_command(experiment: str) -> str:
    """The command that runs ``experiment``'s chapter in the full profile on a GPU, with its inputs named."""
    spec = experiment_of(experiment)
    name, env = weights_of(experiment)
    return (f"{ENV_DATA_ROOT}=/path/to/data {env}=/path/to/{name} "
            f".venv/bin/lpft-run {spec.chapter} --profile full --device cuda")


def records_folder(experiment: str, profile: str) -> Path:
    """Where a chapter and ``lpft-sweep`` keep ``experiment``'s records: ``results/<chapter>/<profile>/<experiment>``."""
    return ROOT / "results" / experiment_of(experiment).chapter / profile / experiment


def write_quick_inputs(folder, settings: dict, experiment: str = "cifar-stl", weights_seed: int = 0
                       ) -> tuple[Path, Path]:
    """The quick profile's inputs for ``experiment``, written into ``folder`` in the real formats: generated data
    (:func:`lpft.scale.imagedata.write_synthetic_root`, :func:`lpft.scale.filelists.write_synthetic_breeds` or
    :func:`~lpft.scale.filelists.write_synthetic_domainnet`) and the experiment's backbone at the profile's ``settings``
    (architecture, width, input size) with random weights drawn from ``weights_seed``, saved as a checkpoint file of
    the experiment's source. Its BatchNorm statistics are set to those of the generated training images (pretraining
    would set them; left at their initial values, the random network's ``eval()``-mode features are nearly constant).
    Returns ``(data_root, checkpoint)``; the same call gives the same bytes."""
    folder, data = Path(folder), Path(folder) / "data"
    sweep = sweep_from_settings(settings, data_root=data, checkpoint="", folder=folder, device="cpu",
                                experiment=experiment)
    if experiment == "cifar-stl":
        imagedata.write_synthetic_root(data)
    elif experiment in filelists.BREEDS_NAMES:
        filelists.write_synthetic_breeds(data, experiment)
    elif experiment == "domainnet":
        filelists.write_synthetic_domainnet(data)
    elif experiment == "fmow":
        filelists.write_synthetic_fmow(data)
    else:
        imagenet.write_synthetic_imagenet(data)
    torch.manual_seed(weights_seed)
    model = backbones.build_backbone(sweep.source, sweep.arch, sweep.width,
                                     **_tower_options(sweep.source, sweep.image_size, sweep.tower))
    task = build_task(data, experiment, n_val=sweep.n_val, image_size=sweep.image_size, load_size=sweep.load_size)
    scale_finetune.calibrate_batchnorm(model, task.train, sweep.runtime())
    checkpoint = folder / f"{sweep.source}-{sweep.arch}-width{sweep.width}-random.pt"
    backbones.save_checkpoint(model, checkpoint, sweep.source)
    return data, checkpoint


def resolve_inputs(data_root: str = "", checkpoint: str = "", source: str | None = None,
                   experiment: str = "cifar-stl") -> tuple[Path, Path]:
    """The data root and checkpoint to use: the given paths, else ``$LPFT_DATA_ROOT`` and the environment variable of
    the experiment's weights (:func:`weights_of`: ``$LPFT_CHECKPOINT`` for MoCo-v2, ``$LPFT_MOCOTP_CHECKPOINT``,
    ``$LPFT_CLIP_CHECKPOINT`` for CLIP RN50, ``$LPFT_CLIP_VIT_CHECKPOINT``), else ``<repository>/data`` and
    ``<repository>/checkpoints/<the file's usual name>``."""
    name, env = weights_of(experiment, source)
    root = data_root or os.environ.get(ENV_DATA_ROOT) or str(ROOT / "data")
    ckpt = checkpoint or os.environ.get(env) or str(ROOT / "checkpoints" / name)
    return Path(root), Path(ckpt)


def resolve_cache() -> Path:
    """Where disk-cached images go: ``$LPFT_CACHE``, else ``<repository>/cache/images``."""
    return Path(os.environ.get(ENV_CACHE) or ROOT / "cache" / "images")


def missing_inputs(data_root, checkpoint, experiment: str = "cifar-stl", source: str = "moco_v2") -> list[str]:
    """What is missing for a real run of ``experiment`` (empty when everything is there): one line per kind of
    absent file, each saying where it was expected and how to obtain it."""
    spec = experiment_of(experiment)
    if experiment == "cifar-stl":
        lines = imagedata.missing_files(data_root)
    elif experiment in filelists.BREEDS_NAMES:
        lines = filelists.missing_breeds(data_root, experiment)
    elif experiment == "domainnet":
        lines = filelists.missing_domainnet(data_root)
    elif experiment == "fmow":
        lines = filelists.missing_fmow(data_root)
    else:
        lines = imagenet.missing_imagenet(data_root)
    if not Path(checkpoint).is_file():
        how = HOW_TO_GET_MOCO_TP if spec.weights == "moco_tp" and source == spec.source else \
            backbones.clip_how_to_get(spec.arch) if source == "clip" == spec.source else backbones.HOW_TO_GET[source]
        lines.append(f"no checkpoint at {checkpoint}: {how}")
    return lines


def sweep_from_settings(settings: dict, *, data_root, checkpoint, folder, device: str, seed: int = 0,
                        experiment: str = "cifar-stl", source: str | None = None) -> Sweep:
    """The :class:`Sweep` of ``experiment`` for a chapter profile's settings (:data:`lpft.book.profiles.CHAPTERS`): the
    experiment's paper settings (:data:`EXPERIMENTS`), overridden by the profile's (a profile value None keeps the
    paper's); seeds from ``seed``. A profile's ``archs`` maps a checkpoint source to the architecture its runs use."""
    spec = experiment_of(experiment)
    source = source or spec.source
    keys = {f for f in Sweep.__dataclass_fields__} - {"data_root", "checkpoint", "folder", "device", "seeds", "source",
                                                      "experiment", "cache"}
    paper = {f.name: getattr(spec, f.name) for f in fields(Experiment) if f.name in keys}
    if source != spec.source:
        paper["arch"] = "resnet50"
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in keys and v is not None}
    options = {**paper, **options}
    if settings.get("archs"):
        options["arch"] = settings["archs"][source]
    if settings.get("towers"):  # (name, value) pairs of a tiny CLIP tower per architecture
        options["tower"] = tuple(sorted(settings["towers"].get(options["arch"], {}).items()))
    cache = str(resolve_cache()) if spec.disk_cache and not settings.get("synthetic") else ""
    return Sweep(data_root=str(data_root), checkpoint=str(checkpoint), folder=str(folder), device=device, cache=cache,
                 source=source, experiment=experiment, seeds=tuple(range(seed, seed + settings["n_seeds"])), **options)


def experiments_table() -> pd.DataFrame:
    """One row per experiment of :data:`EXPERIMENTS`: its chapter, ID set and OOD columns, backbone and the checkpoint
    file with the environment variable that locates it, training settings, LP and learning-rate grids."""
    rows = {}
    for name, spec in EXPERIMENTS.items():
        file, env = weights_of(name)
        rows[name] = {"chapter": spec.chapter, "ID": spec.id_set, "OOD": ", ".join(spec.paper_ood.values()),
                      "backbone": f"{spec.source} {spec.arch}", "checkpoint": f"${env} ({file})",
                      "epochs": spec.epochs, "batch": str(spec.batch_size) if spec.accumulate == 1 else
                      f"{spec.batch_size} ({spec.accumulate} × {spec.batch_size // spec.accumulate})",
                      "augment": spec.augment, "input std": "usual" if spec.std is None else
                      " ".join(f"{v:g}" for v in spec.std), "LP": spec.lp,
                      "FT lrs": " ".join(f"{lr:g}" for lr in spec.ft_lrs),
                      "LP-FT lrs": " ".join(f"{lr:g}" for lr in spec.lpft_lrs),
                      "ID-val": "ID test" if spec.n_val is None else f"{spec.n_val} held out"}
    return pd.DataFrame(rows).T


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
    from lpft.book.profiles import CHAPTERS, PROFILES, resolve_device

    parser = argparse.ArgumentParser(prog="lpft-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="cifar-stl", choices=list(EXPERIMENTS))
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--data-root", default="", help=f"default: ${ENV_DATA_ROOT} or <repo>/data")
    parser.add_argument("--checkpoint", default="", help="default: the experiment's $LPFT_*CHECKPOINT variable "
                                                         "(see lpft.scale.launch.WEIGHTS) or <repo>/checkpoints/...")
    parser.add_argument("--source", default=None, choices=backbones.SOURCES,
                        help="checkpoint format (default: the paper's backbone for the experiment)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--executor", default="inline", choices=EXECUTORS)
    parser.add_argument("--parallel", type=int, default=1, help="local: processes at once; slurm: array parallelism")
    parser.add_argument("--timeout-min", type=int, default=24 * 60)
    parser.add_argument("--slurm-partition", default=None)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a submitit AutoExecutor parameter for slurm, e.g. cpus_per_task=8 or mem_gb=64")
    parser.add_argument("--folder", type=Path, default=None,
                        help="records (default: results/<chapter>/<profile>/<experiment>)")
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")
    parser.add_argument("--list", action="store_true", help="print every experiment's paper settings and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(experiments_table().to_string())
        return 0
    spec = EXPERIMENTS[args.experiment]
    source = args.source or spec.source
    data_root, checkpoint = resolve_inputs(args.data_root, args.checkpoint, source, args.experiment)
    missing = missing_inputs(data_root, checkpoint, args.experiment, source)
    if missing:
        print("lpft-sweep: missing inputs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    settings = {**CHAPTERS[spec.chapter][args.profile], "progress": args.progress}
    # a Slurm submission host need not have the GPU its jobs will get
    device = ("cuda" if args.device == "auto" else args.device) if args.executor == "slurm" else \
        resolve_device(args.device)
    sweep = sweep_from_settings(settings, data_root=data_root, checkpoint=checkpoint, source=source,
                                experiment=args.experiment, seed=args.seed, device=device,
                                folder=args.folder or records_folder(args.experiment, args.profile))
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

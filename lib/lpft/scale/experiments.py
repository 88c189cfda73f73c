"""The paper's experiments, one registry entry each: its data, its backbone and weights file, and its settings.

An :class:`Experiment` is one family of columns of the paper's Tables 1-2 (datasets: the paper's Section 4; settings:
the official code's ``configs/adaptation/*.yaml`` and ``scripts/run_adaptation_experiments.py``, in
github.com/AnanyaKumar/transfer_learning): CIFAR-10 → STL-10 / CIFAR-10.1, BREEDS Living-17 and Entity-30, DomainNet,
FMoW geo-shift, ImageNet → V2 / R / Sketch / A. Its ``paper`` field is the :class:`~lpft.scale.sweep.Sweep` of the
paper's settings (backbone, epochs, batch, augmentation, LP kind, the ``C`` and learning-rate grids, 3 seeds), so the
full profile of an experiment is that entry and nothing else. The one other profile is a named override of it,
:func:`smoke` (the quick profile: a small random-weight network on small generated images in the real file format, 3
epochs, small grids), whose fields are :data:`SMOKE` plus the experiment's own ``smoke`` pairs. Adding an experiment is
adding one entry here and its file format in :mod:`lpft.scale.data`.

Inputs come from arguments or environment variables, never from where the code is installed: the data root
(``$LPFT_DATA_ROOT``), the checkpoint (the weights' variable in :data:`WEIGHTS`) and the disk cache (``$LPFT_CACHE``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpft.scale import backbones, data, finetune
from lpft.scale.sweep import Sweep, tower_options

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
PAPER_CS = tuple(float(c) for c in np.logspace(-7, 2, 50))  # LP's C grid: 10^-7 ... 10^2, 50 values
# The input normalisation's std in the paper's CIFAR-10 -> STL-10 and BREEDS configs, taken from SwAV's fine-tuning
# script: 0.228 for red where torchvision (and MoCo's pretraining) use 0.229. FMoW's config trains with 0.2289 and
# evaluates with 0.229; its runs here use 0.229 throughout.
PAPER_STD = (0.228, 0.224, 0.225)
# The smoke override's fields common to every experiment (each entry's ``smoke`` adds its own): width-8 networks, 32 px
# inputs, 3 epochs, two seeds, small grids; generated inputs are decoded into RAM (no disk cache).
SMOKE = dict(width=8, image_size=32, batch_size=32, epochs=3, seeds=(0, 1), Cs=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0),
             ft_lrs=(3e-3, 1e-2), lpft_lrs=(3e-4, 1e-3), wise_alphas=(0.5,), l2sp_lrs=(1e-2,), feature_n=100,
             progress=False, cache="")
OVERRIDES = ("smoke",)


@dataclass(frozen=True)
class Experiment:
    """One family of columns of the paper's Tables 1-2: its ID column, which summary column fills which OOD column
    (``"OOD mean"``: the mean over the task's OOD sets, as the paper's DomainNet number), the paper's weights
    (``weights``: a :data:`WEIGHTS` name), and ``paper``, the :class:`~lpft.scale.sweep.Sweep` of the paper's settings
    (``load_size``: the size images are stored at before the transforms, None: the files' own; ``n_val`` None: the ID
    test set doubles as ID-val, as in all the paper's runs, whose code early-stops and selects on the ID test set;
    ``lp``: :func:`~lpft.finetune.logistic_probe` ("logistic") or ImageNet's :func:`~lpft.scale.finetune.sgd_probe`
    ("sgd"); ``std``: the input normalisation's std where the official configs differ from the backbone's usual one,
    :data:`PAPER_STD`). ``disk_cache``: decode the images once into a disk cache instead of RAM
    (:func:`lpft.scale.data.files.decode_set`; ImageNet's training set is about 193 GB as uint8 at 224 px, Entity-30's
    30 GB at 256 px). ``smoke``: this experiment's own fields of the smoke override, as (field, value) pairs."""
    name: str
    id_set: str
    paper_ood: dict
    weights: str
    paper: Sweep
    smoke: tuple = ()
    disk_cache: bool = False

    @property
    def source(self) -> str:
        """The checkpoint format of the paper's backbone (a :data:`lpft.scale.backbones.SOURCES` entry)."""
        return self.paper.source

    @property
    def arch(self) -> str:
        """The paper's backbone architecture."""
        return self.paper.arch


def _entry(name: str, id_set: str, paper_ood: dict, weights: str, *, smoke: dict, disk_cache: bool = False,
           **settings) -> Experiment:
    """An entry whose paper settings are the official code's common ones (20 epochs, batch 64, MoCo-v2 ResNet-50,
    no augmentation, logistic LP over :data:`PAPER_CS`, the April 2022 grids, L2-SP over FT's grid, WiSE-FT at 0.25,
    0.5 and 0.75, 3 seeds) changed by ``settings``."""
    paper = dict(experiment=name, source=WEIGHTS[weights][0], Cs=PAPER_CS, ft_lrs=GRIDS["ft"], lpft_lrs=GRIDS["lpft"],
                 l2sp_lrs=GRIDS["ft"], wise_alphas=(0.25, 0.5, 0.75), seeds=(0, 1, 2), progress=True)
    return Experiment(name, id_set, paper_ood, weights, Sweep(**{**paper, **settings}), tuple(smoke.items()),
                      disk_cache)


_BREEDS = dict(augment="random-resized-crop", centre_crop=True, load_size=256, disk_cache=True, std=PAPER_STD,
               smoke=dict(arch="resnet18", load_size=40))
_VIT_TOWER = (("heads", 2), ("layers", 2), ("output_dim", 32), ("patch_size", 8))  # a tiny CLIP ViT for smoke runs
EXPERIMENTS = {e.name: e for e in (
    _entry("cifar-stl", "CIFAR-10", {"OOD STL-10": "STL-10", "OOD CIFAR-10.1": "CIFAR-10.1"}, "moco_v2",
           width=64, std=PAPER_STD, smoke=dict(arch="resnet18", n_val=80, ft_lrs=(1e-2, 3e-2), lpft_lrs=(1e-3, 3e-3),
                                               l2sp_lrs=(3e-2,))),
    _entry("living17", "Living-17", {"OOD Living-17 target": "Living-17"}, "moco_v2", **_BREEDS),
    _entry("entity30", "Entity-30", {"OOD Entity-30 target": "Entity-30"}, "moco_v2", **_BREEDS),
    _entry("domainnet", "DomainNet", {"OOD mean": "DomainNet"}, "clip_rn50", arch="RN50", epochs=50, batch_size=32,
           accumulate=2, augment="random-crop", load_size=256, smoke=dict(load_size=40)),
    _entry("fmow", "FMoW", {"OOD Africa": "FMoW"}, "moco_tp", epochs=50, smoke=dict(arch="resnet18", width=16)),
    _entry("imagenet", "ImageNet", {f"OOD {k}": k for k in ("ImageNetV2", "ImageNet-R", "ImageNet-Sketch",
                                                              "ImageNet-A")},
           "clip_vit_b16", arch="ViT-B-16", epochs=10, batch_size=128, lp="sgd", ft_lrs=GRIDS["imagenet ft"],
           lpft_lrs=GRIDS["imagenet lpft"], l2sp_lrs=GRIDS["imagenet ft"], disk_cache=True,
           smoke=dict(width=16, tower=_VIT_TOWER)),
)}


def experiment_of(name: str) -> Experiment:
    """The registry entry of experiment ``name``; a ValueError names the known ones."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {list(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def smoke(experiment: str) -> Sweep:
    """The quick profile's settings of ``experiment``: its paper settings with :data:`SMOKE` and the entry's own
    ``smoke`` fields replaced (a smoke test of the same code path on a CPU; its numbers are not results)."""
    spec = experiment_of(experiment)
    return replace(spec.paper, **{**SMOKE, **dict(spec.smoke)})


def settings(experiment: str, override: str | None = None, source: str | None = None) -> Sweep:
    """``experiment``'s settings: the paper's (``override`` None) or the named override (:data:`OVERRIDES`), with
    the backbone read from a checkpoint of another ``source`` if given (a ResNet-50, or the smoke override's
    ResNet-18; CLIP: its RN50)."""
    if override not in (None, *OVERRIDES):
        raise ValueError(f"override must be None or one of {OVERRIDES}; got {override!r}")
    spec = experiment_of(experiment)
    sweep = spec.paper if override is None else smoke(experiment)
    if source is not None and source != spec.source:
        arch = "RN50" if source == "clip" else "resnet50" if override is None else "resnet18"
        sweep = replace(sweep, source=source, arch=arch, tower=())
    return sweep


def sweep_for(experiment: str, override: str | None = None, *, data_root, checkpoint, folder, device: str,
              seeds: tuple | None = None, source: str | None = None, cache="", **changes) -> Sweep:
    """The :class:`~lpft.scale.sweep.Sweep` that runs :func:`settings` of ``experiment`` from ``data_root`` and
    ``checkpoint`` into ``folder`` on ``device`` (``seeds``: None keeps the settings'; ``cache``: the disk-cache folder
    of experiments that decode into one, paper settings only; ``changes``: any other field)."""
    sweep = settings(experiment, override, source)
    cache = str(cache) if experiment_of(experiment).disk_cache and override is None and cache else ""
    return replace(sweep, data_root=str(data_root), checkpoint=str(checkpoint), folder=str(folder), device=device,
                   cache=cache, **({} if seeds is None else {"seeds": tuple(seeds)}), **changes)


# ---- inputs: where they are, what is missing, a generated copy ----------------------------------------------------

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


def resolve_inputs(data_root: str = "", checkpoint: str = "", source: str | None = None,
                   experiment: str = "cifar-stl", *, default_root="data", default_checkpoints="checkpoints"
                   ) -> tuple[Path, Path]:
    """The data root and checkpoint to use: the given paths, else ``$LPFT_DATA_ROOT`` and the environment variable of
    the experiment's weights (:func:`weights_of`: ``$LPFT_CHECKPOINT`` for MoCo-v2, ``$LPFT_MOCOTP_CHECKPOINT``,
    ``$LPFT_CLIP_CHECKPOINT`` for CLIP RN50, ``$LPFT_CLIP_VIT_CHECKPOINT``), else ``default_root`` and
    ``default_checkpoints/<the file's usual name>``."""
    name, env = weights_of(experiment, source)
    root = data_root or os.environ.get(ENV_DATA_ROOT) or str(default_root)
    ckpt = checkpoint or os.environ.get(env) or str(Path(default_checkpoints) / name)
    return Path(root), Path(ckpt)


def resolve_cache(default="cache/images") -> Path:
    """Where disk-cached images go: ``$LPFT_CACHE``, else ``default``."""
    return Path(os.environ.get(ENV_CACHE) or default)


def missing_inputs(data_root, checkpoint, experiment: str = "cifar-stl", source: str = "moco_v2") -> list[str]:
    """What is missing for a real run of ``experiment`` (empty when everything is there): one line per kind of
    absent file, each saying where it was expected and how to obtain it."""
    spec = experiment_of(experiment)
    lines = data.format_of(experiment).missing(data_root)
    if not Path(checkpoint).is_file():
        how = HOW_TO_GET_MOCO_TP if spec.weights == "moco_tp" and source == spec.source else \
            backbones.clip_how_to_get(spec.arch) if source == "clip" == spec.source else backbones.HOW_TO_GET[source]
        lines.append(f"no checkpoint at {checkpoint}: {how}")
    return lines


def write_quick_inputs(folder, sweep: Sweep, weights_seed: int = 0) -> tuple[Path, Path]:
    """Inputs for ``sweep`` (its experiment, architecture, width and input size; typically :func:`smoke`), written
    into ``folder`` in the real formats: generated data (the format's ``write_synthetic``,
    :mod:`lpft.scale.data`) and the backbone with random weights drawn from ``weights_seed``, saved as a
    checkpoint file of the sweep's source. Its BatchNorm statistics are set to those of the generated training images
    (pretraining would set them; left at their initial values, the random network's ``eval()``-mode features are
    nearly constant). Returns ``(data_root, checkpoint)``; the same call gives the same bytes."""
    folder, root = Path(folder), Path(folder) / "data"
    sweep = replace(sweep, data_root=str(root), device="cpu", cache="", max_train=None, max_eval=None)
    data.format_of(sweep.experiment).write_synthetic(root)
    torch.manual_seed(weights_seed)
    model = backbones.build_backbone(sweep.source, sweep.arch, sweep.width,
                                     **tower_options(sweep.source, sweep.image_size, sweep.tower))
    task = data.build_task(root, sweep.experiment, n_val=sweep.n_val, image_size=sweep.image_size,
                           load_size=sweep.load_size)
    finetune.calibrate_batchnorm(model, task.train, sweep.runtime())
    checkpoint = folder / f"{sweep.source}-{sweep.arch}-width{sweep.width}-random.pt"
    backbones.save_checkpoint(model, checkpoint, sweep.source)
    return root, checkpoint


def experiments_table() -> pd.DataFrame:
    """One row per experiment of :data:`EXPERIMENTS`: its ID set and OOD columns, backbone and the checkpoint file
    with the environment variable that locates it, training settings, LP and learning-rate grids."""
    rows = {}
    for name, spec in EXPERIMENTS.items():
        file, env = weights_of(name)
        p = spec.paper
        rows[name] = {"ID": spec.id_set, "OOD": ", ".join(spec.paper_ood.values()),
                      "backbone": f"{p.source} {p.arch}", "checkpoint": f"${env} ({file})",
                      "epochs": p.epochs, "batch": str(p.batch_size) if p.accumulate == 1 else
                      f"{p.batch_size} ({p.accumulate} × {p.batch_size // p.accumulate})",
                      "augment": p.augment,
                      "input std": "usual" if p.std is None else " ".join(f"{v:g}" for v in p.std),
                      "LP": p.lp, "FT lrs": " ".join(f"{lr:g}" for lr in p.ft_lrs),
                      "LP-FT lrs": " ".join(f"{lr:g}" for lr in p.lpft_lrs),
                      "ID-val": "ID test" if p.n_val is None else f"{p.n_val} held out"}
    return pd.DataFrame(rows).T


def setting_fields() -> tuple[str, ...]:
    """The fields of a :class:`~lpft.scale.sweep.Sweep` that are settings (not where inputs and records live)."""
    return tuple(f.name for f in fields(Sweep) if f.name not in ("data_root", "checkpoint", "folder", "device",
                                                                   "slurm"))

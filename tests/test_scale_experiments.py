"""The registry of the paper's experiments: every experiment in one entry with a file format, the quick profile a
named override of the paper's settings, the book's profiles free of settings, and lpft.scale usable without the book."""
import subprocess
import sys
import textwrap
from dataclasses import fields

import pytest

from lpft import paper
from lpft.book import profiles
from lpft.scale import data, experiments
from lpft.scale.sweep import Sweep

PAPER_SCALE = ("experiments-cifar-stl", "experiments-breeds-domainnet", "experiments-fmow-imagenet")


def test_the_registry_has_every_experiment_of_the_papers_tables_and_its_file_format():
    assert set(experiments.EXPERIMENTS) == {"cifar-stl", "living17", "entity30", "domainnet", "fmow", "imagenet"}
    assert set(data.FORMATS) == set(experiments.EXPERIMENTS)
    sets = {s for e in experiments.EXPERIMENTS.values() for s in (e.id_set, *e.paper_ood.values())}
    assert sets == set(paper.ID_ACCURACY) | set(paper.OOD_ACCURACY)  # every column of Tables 1-2
    for name, spec in experiments.EXPERIMENTS.items():
        assert spec.name == name == spec.paper.experiment and spec.weights in experiments.WEIGHTS
        assert spec.source == experiments.WEIGHTS[spec.weights][0]
        assert spec.paper.seeds == (0, 1, 2) and spec.paper.n_val is None  # 3 runs, selected on the ID test set
    chapters = {n for c in PAPER_SCALE for p in profiles.CHAPTERS[c].values() for n in p["experiments"]}
    assert chapters == set(experiments.EXPERIMENTS)


def test_every_dataset_format_exposes_the_same_functions(tmp_path):
    from lpft.scale.data import breeds, cifar, domainnet, fmow, imagenet

    for module in (breeds, cifar, domainnet, fmow, imagenet):
        assert all(callable(getattr(module, f)) for f in ("load", "missing", "write_synthetic")), module.__name__
        assert isinstance(module.HOW_TO_GET, dict) and module.HOW_TO_GET, module.__name__
    for name, fmt in data.FORMATS.items():
        lines = fmt.missing(tmp_path / "empty")
        assert lines and all("To obtain" in line or "obtain" in line for line in lines), name
    with pytest.raises(ValueError, match="unknown experiment"):
        data.format_of("imagenet-21k")


def test_the_quick_override_differs_from_the_papers_settings_only_in_its_named_fields():
    for name, spec in experiments.EXPERIMENTS.items():
        full, quick = experiments.settings(name), experiments.settings(name, "smoke")
        assert full == spec.paper
        named = set(experiments.SMOKE) | {k for k, _ in spec.smoke}
        changed = {f.name for f in fields(Sweep) if getattr(full, f.name) != getattr(quick, f.name)}
        assert changed <= named, (name, changed - named)
        assert {k for k in named if k != "cache"} <= {f.name for f in fields(Sweep)}
        assert quick.epochs == 3 and quick.width in (8, 16) and quick.image_size == 32 and len(quick.seeds) == 2
    with pytest.raises(ValueError, match="override"):
        experiments.settings("cifar-stl", "tiny")


def test_the_books_paper_scale_profiles_hold_no_settings():
    """The grids and training settings live in the registry alone; a chapter's profile says which experiments, how
    many seeds and which override."""
    for chapter in PAPER_SCALE:
        for profile, entry in profiles.CHAPTERS[chapter].items():
            assert set(entry) == {"experiments", "n_seeds", "override"}, (chapter, profile)
            assert entry["override"] == (None if profile == "full" else "smoke")


def test_a_sweeps_settings_are_the_registrys():
    s = experiments.sweep_for("domainnet", data_root="d", checkpoint="c", folder="f", device="cuda", seeds=(4, 5, 6),
                              cache="/fast")
    assert s.seeds == (4, 5, 6) and s.cache == ""  # DomainNet is held in RAM
    same = {f.name for f in fields(Sweep)} - {"data_root", "checkpoint", "folder", "device", "seeds", "slurm"}
    assert all(getattr(s, k) == getattr(experiments.EXPERIMENTS["domainnet"].paper, k) for k in same)
    other = experiments.settings("cifar-stl", source="torchvision")
    assert (other.source, other.arch) == ("torchvision", "resnet50")
    assert experiments.settings("cifar-stl", "smoke", source="torchvision").arch == "resnet18"
    assert experiments.sweep_for("imagenet", data_root="d", checkpoint="c", folder="f", device="cuda",
                                 cache="/fast").cache == "/fast"


def test_the_scale_layer_works_without_the_book():
    """Every lpft.scale module imports, and lpft-sweep lists the experiments and refuses to start without inputs, in
    a fresh interpreter where lpft.book and the book's packages fail to import."""
    script = textwrap.dedent("""
        import importlib.abc, pkgutil, sys, tempfile
        BLOCKED = {"matplotlib", "seaborn", "myst_nb", "papermill", "jupytext", "nbformat", "sphinx", "IPython"}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED or name.startswith("lpft.book"):
                    raise ImportError(f"{name} is not part of lpft[scale]")
        sys.meta_path.insert(0, Block())
        import lpft.scale
        for m in pkgutil.iter_modules(lpft.scale.__path__):
            __import__(f"lpft.scale.{m.name}")
        from lpft.scale import cli
        assert cli.main(["--list"]) == 0
        with tempfile.TemporaryDirectory() as d:
            assert cli.main(["--experiment", "fmow", "--data-root", d, "--checkpoint", d + "/x.pt"]) == 1
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok") and "imagenet" in out.stdout

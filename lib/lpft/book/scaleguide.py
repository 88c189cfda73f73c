"""What a paper-scale chapter says about running the paper's experiment, and the checklist of the stages a run went
through.

Without the datasets and checkpoints (CI's quick profile, or the full profile on a machine without them) a chapter
cannot measure the paper's claims, so it says how to: the commands (:func:`chapter_command`, :func:`sweep_command`),
the files each format reads (:func:`layout`: the :mod:`lpft.scale.data` registry's own lines for missing files and how
to get them, so the page cannot drift from the loaders), and the GPU time (:func:`gpu_time`: only from a GPU
measurement, ``benchmarks/gpu_check.py``; without one, what is exact: the number of runs and of epoch passes over the
training set). :func:`checklist` checks every stage of a run that did happen (the quick profile's smoke run, or a real
run) without printing a single accuracy: data found in the format, loaded, trained, evaluated, records written, tables
built.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from lpft.book import paths
from lpft.scale import data, experiments, tables
from lpft.records import code_fingerprint, record_path
from lpft.scale.sweep import CODE_MODULES, Sweep, job_config, job_name, jobs, load_backbone, load_task

NOT_RUN = "not run here"
GPU_CHECK = Path("archive") / "benchmarks" / "gpu-check.json"  # where gpu_check.py's --out keeps its results
MEASURE = f".venv/bin/python benchmarks/gpu_check.py --out {GPU_CHECK}"
MEASURED_ROW = "cifar-stl"  # the one row gpu_check.py projects (benchmarks/largescale.py --row cifar-stl)
# the benchmark that projects a row gpu_check.py does not (its result is printed, not kept where this page reads)
OTHER_MEASURES = {"imagenet": ".venv/bin/python benchmarks/largescale.py --device cuda --row imagenet"}
TRAINED = ("FT", "LP-FT", "L2-SP")


def _plural(n: int, word: str) -> str:
    """``"1 run"``, ``"3 runs"``."""
    from lpft import prose

    return f"{prose.count(n)} {word}{'' if n == 1 else 's'}"


def _env(experiment: str, source: str | None = None) -> str:
    return experiments.weights_of(experiment, source)[1]


def chapter_command(chapter: str, names, sources: dict | None = None) -> str:
    """The command that runs ``chapter`` in the full profile on a GPU: the data root, each experiment's checkpoint
    variable (``names``; ``sources``: experiment -> checkpoint format, default the paper's) and, where an experiment
    decodes its images into a disk cache, ``$LPFT_CACHE``; then ``lpft-run``."""
    sources = sources or {}
    env = dict.fromkeys([experiments.ENV_DATA_ROOT] + [_env(n, sources.get(n)) for n in names])
    files = {_env(n, sources.get(n)): experiments.weights_of(n, sources.get(n))[0] for n in names}
    if any(experiments.experiment_of(n).disk_cache for n in names):  # decoded images, on a fast disk
        files[experiments.ENV_CACHE] = "fast/disk/cache"
        env[experiments.ENV_CACHE] = None
    assign = " ".join(f"{k}=/path/to/{files.get(k, 'data')}" for k in env)
    return f"{assign} \\\n  .venv/bin/lpft-run {chapter} --profile full --device cuda"


def sweep_command(experiment: str, source: str | None = None) -> str:
    """The ``lpft-sweep`` command that runs ``experiment``'s paper sweep into the records its chapter reads back."""
    return (f".venv/bin/lpft-sweep --experiment {experiment} --profile full "
            f"--data-root \"${experiments.ENV_DATA_ROOT}\" --checkpoint \"${_env(experiment, source)}\" --device cuda")


def layout(experiment: str, source: str | None = None) -> list[str]:
    """The files ``experiment`` reads, as its format's loader reports them when they are absent (paths under
    ``$LPFT_DATA_ROOT``), then how to get any input those lines do not name (the format's ``how_to_get``), then the
    checkpoint and where to get it."""
    spec = experiments.experiment_of(experiment)
    source = source or spec.source
    env = _env(experiment, source)
    lines = experiments.missing_inputs(Path(f"${experiments.ENV_DATA_ROOT}"), Path(f"${env}"), experiment, source)
    lines += [f"{name}: to obtain it, {how}." for name, how in data.format_of(experiment).how_to_get.items()
              if not any(how in line for line in lines)]
    return lines


def runs_and_passes(sweep: Sweep) -> dict:
    """Exact counts of ``sweep``'s work: its runs per method and the epoch passes over the ID training set that its
    trained runs make (FT, LP-FT and L2-SP: runs × epochs; each also evaluates ID-val after every epoch)."""
    per_method = Counter(j["method"] for j in jobs(sweep))
    trained = sum(per_method[m] for m in TRAINED)
    return {"runs": dict(per_method), "trained runs": trained, "epochs": sweep.epochs,
            "epoch passes": trained * sweep.epochs}


def gpu_measurement(root: Path | None = None) -> dict | None:
    """The projection of ``benchmarks/gpu_check.py`` (``archive/benchmarks/gpu-check.json`` under ``root``, default
    the repository) when it exists, ran on a GPU at full size and passed; else None."""
    path = Path(root or paths.ROOT) / GPU_CHECK
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    check = next((c for c in result.get("checks", []) if c.get("name") == "projection"), None)
    if result.get("device") != "cuda" or result.get("sizes") != "full" or not check or check.get("status") != "PASS":
        return None
    hours = check["details"]["projected_sweep_hours"]
    return {"gpu": result.get("device_name", "a GPU"), "date": result.get("date", "")[:10], "hours": hours,
            "command": check["details"].get("command", "")} if math.isfinite(hours) else None


def gpu_time(experiment: str, sweep: Sweep, root: Path | None = None) -> str:
    """One paragraph: the projected GPU time of ``experiment``'s paper sweep where a GPU measurement gives it, else
    that there is none, with what is exact (:func:`runs_and_passes`) and the command that measures it."""
    from lpft import prose

    n = runs_and_passes(sweep)
    exact = (f"{prose.count(n['trained runs'])} trained runs (FT, LP-FT and L2-SP over their learning-rate grids × "
             f"{prose.count(len(sweep.seeds))} seeds) × {prose.count(n['epochs'])} epochs = "
             f"{prose.count(n['epoch passes'])} passes over the ID training set, each followed by an ID-val pass, "
             f"plus {_plural(n['runs'].get('LP', 0), 'LP run')} (each one feature pass over every set)")
    measured = gpu_measurement(root) if experiment == MEASURED_ROW else None
    if measured:
        return (f"Projected GPU time, from a measurement: {prose.significant(measured['hours'])} h on one "
                f"{measured['gpu']} (`benchmarks/gpu_check.py`, {measured['date']}: its throughput × the paper's "
                f"image counts, FT and LP-FT grids × 3 seeds, L2-SP not included). Exact: {exact}.")
    if experiment in OTHER_MEASURES:
        how = f"The command that measures its throughput on a GPU and projects the sweep's time: " \
              f"`{OTHER_MEASURES[experiment]}`."
    else:
        how = (f"The command that measures the throughput of the paper-scale loop on a GPU (and projects CIFAR-10 → "
               f"STL-10's sweep from it): `{MEASURE}`.")
    return (f"Projected GPU time: **no GPU measurement** of this row is held in the repository, so none is given. "
            f"Exact: {exact}. {how}")


# ---- the checklist of a run's stages ---------------------------------------------------------------------------------

def _finite_fraction(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0


def checklist(sweep: Sweep, records: list[dict], summary: pd.DataFrame) -> pd.DataFrame:
    """One row per stage of ``sweep``'s run (``records``: what :func:`lpft.scale.sweep.run_sweep` returned;
    ``summary``: :func:`lpft.scale.tables.summarise` of them): whether it ran ("✓" or "✗") and what was checked, in
    counts, never an accuracy."""
    experiment, wanted = sweep.experiment, jobs(sweep)
    task = load_task(sweep)[0]
    missing = data.format_of(experiment).missing(sweep.data_root)
    sizes = {name: len(s) for name, s in (("ID train", task.train), ("ID test", task.test_id), *task.ood.items())}
    backbone = load_backbone(sweep)[0]
    trained = [r for r in records if r["config"]["method"] in TRAINED]
    n_lp = sum(r["config"]["method"] == "LP" for r in records)
    epochs_ok = all(1 <= r["results"].get("best_epoch", 0) <= sweep.epochs for r in trained)
    evaluated = all(_finite_fraction(r["results"][k]) for r in records for k in ("val", "id")) and all(
        set(r["results"]["ood"]) == set(task.ood) and all(map(_finite_fraction, r["results"]["ood"].values())) and
        set(r["results"]["feature_change"]) == {"ID", *task.ood} for r in records)
    # a run whose features diverged (a non-finite feature change) was evaluated: it is a result, named, not a failure
    diverged = [job_name(r["config"]) for r in records
                if not all(math.isfinite(v) for v in r["results"]["feature_change"].values())]
    # this run's record files (the folder may also hold records of earlier library code or other settings)
    code = code_fingerprint(CODE_MODULES)
    written = [j for j in wanted if record_path(sweep.folder, job_config(sweep, j), job_name(j), code).is_file()]
    compare = tables.compare_with_paper(summary, experiment)
    orders = tables.orderings(summary, experiment)
    rows = [
        ("data in the format", not missing, f"the {experiment} loader finds every file it reads under the data root"),
        ("checkpoint in the format", Path(sweep.checkpoint).is_file(),
         f"{Path(sweep.checkpoint).name} read back as a {sweep.source} checkpoint: {sweep.arch}, "
         f"{sum(p.numel() for p in backbone.parameters()):,} parameters"),
        ("loaded", all(sizes.values()), ", ".join(f"{k}: {v} images" for k, v in sizes.items())),
        ("trained", len(trained) == sum(j["method"] in TRAINED for j in wanted) and epochs_ok,
         f"{_plural(len(trained), 'trained run')} (FT, LP-FT, L2-SP) of {_plural(sweep.epochs, 'epoch')}, each "
         f"early-stopped at an epoch in 1..{sweep.epochs}; LP: {_plural(n_lp, 'run')}"),
        ("evaluated", evaluated, f"ID-val, ID test and {_plural(len(task.ood), 'OOD set')} per run: every accuracy "
                                 f"a number in [0, 1], a feature change on every set; " +
         (f"non-finite features (diverged) in {', '.join(diverged)}" if diverged else "every feature change finite")),
        ("records written", len(records) == len(wanted) == len(written),
         f"{_plural(len(records), 'record')} for {_plural(len(wanted), 'job')}; "
         f"{_plural(len(written), 'record file')} of this code in {paths.relative(sweep.folder)}"),
        ("tables built", set(tables.METHODS[:3]) <= set(summary.index) and compare["this run"].notna().all()
         and len(orders) == len(tables.orderings(None, experiment)),
         f"summary of {_plural(len(summary), 'method')}; comparison table of {len(compare)} cells; "
         f"{_plural(len(orders), 'comparison')}"),
    ]
    return pd.DataFrame([{"experiment": experiment, "stage": stage, "ran": "✓" if ok else "✗", "checked": what}
                         for stage, ok, what in rows])

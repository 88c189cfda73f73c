"""One helper for the three paper-scale chapters: their inputs, their sweeps, what they print, their tables, figures and
glued numbers.

:class:`PaperScale` is made from a chapter's config (:func:`lpft.book.start_chapter`): for each experiment of the
chapter's profile, it resolves the inputs (the quick profile writes its generated files;
the full profile looks for the data and checkpoints and lists what is missing) and builds the
:class:`~lpft.scale.sweep.Sweep` of the experiment's settings (:func:`lpft.scale.experiments.sweep_for`; the quick
profile is the named ``smoke`` override of the paper's settings); it then runs or reads back every sweep the same way
and makes every table and figure from the records.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import display

from lpft import paper, report
from lpft.book import glue, paths, plotting
from lpft.book.profiles import CHAPTERS
from lpft.scale import experiments, tables
from lpft.scale.cli import records_folder as _records_folder
from lpft.scale.sweep import Sweep, jobs, load_task, lp_job, run_sweep


@dataclass
class Inputs:
    """What one experiment of a paper-scale chapter runs on: its data root and checkpoint, and what is missing."""
    experiment: str
    data_root: Path
    checkpoint: Path
    source: str
    missing: list

    @property
    def ran(self) -> bool:
        return not self.missing


def chapter_of(experiment: str) -> str:
    """The chapter whose profiles run ``experiment``."""
    return next(name for name, p in CHAPTERS.items() if experiment in p["full"].get("experiments", ()))


def records_folder(experiment: str, profile: str) -> Path:
    """Where a chapter and ``lpft-sweep`` (run from the repository) keep ``experiment``'s records:
    ``results/paper-scale/<profile>/<experiment>``."""
    return _records_folder(paths.RESULTS, experiment, profile)


def full_command(experiment: str) -> str:
    """The command that runs ``experiment``'s chapter in the full profile on a GPU, with its inputs named."""
    name, env = experiments.weights_of(experiment)
    return (f"{experiments.ENV_DATA_ROOT}=/path/to/data {env}=/path/to/{name} "
            f".venv/bin/lpft-run {chapter_of(experiment)} --profile full --device cuda")


def chapter_inputs(experiment: str, override: str | None, scratch, *, data_root: str = "", checkpoint: str = "",
                   source: str | None = None) -> Inputs:
    """``experiment``'s inputs in a chapter: with the smoke override, generated files written under ``scratch``
    (:func:`lpft.scale.experiments.write_quick_inputs`); otherwise the given paths or their defaults (the
    environment's, else the repository's ``data/`` and ``checkpoints/``) and the list of what is missing there."""
    source = source or experiments.experiment_of(experiment).source
    if override is not None:
        root, ckpt = experiments.write_quick_inputs(Path(scratch) / experiment,
                                                    experiments.settings(experiment, override, source))
        return Inputs(experiment, root, ckpt, source, [])
    root, ckpt = experiments.resolve_inputs(data_root, checkpoint, source, experiment,
                                            default_root=paths.ROOT / "data",
                                            default_checkpoints=paths.ROOT / "checkpoints")
    return Inputs(experiment, root, ckpt, source, experiments.missing_inputs(root, ckpt, experiment, source))


def describe(inputs: Inputs, sweep: Sweep | None, profile: str) -> str:
    """One paragraph for the chapter's first output: what this experiment ran on, or what is missing and the command
    that runs it once the files are there."""
    spec = experiments.experiment_of(inputs.experiment)
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


def _key(name: str) -> str:
    return name.replace("-", "_")


class PaperScale:
    """A paper-scale chapter's experiments: ``inputs`` and ``sweeps`` (those whose inputs are all there) per
    experiment; after :meth:`run`, their ``records``, ``summaries`` (:func:`lpft.scale.tables.summarise`) and
    ``runs`` (:func:`lpft.scale.tables.runs_table`)."""

    def __init__(self, cfg, *, data_root: str = "", checkpoints: dict | None = None, source: str | None = None):
        self.cfg, checkpoints = cfg, checkpoints or {}
        self._scratch = tempfile.TemporaryDirectory()  # the quick profile's generated files; removed with this object
        self.inputs, self.sweeps = {}, {}
        seeds = tuple(range(cfg.seed, cfg.seed + cfg.n_seeds))
        for name in cfg.experiments:
            spec = experiments.experiment_of(name)
            self.inputs[name] = chapter_inputs(name, cfg.override, self._scratch.name, data_root=data_root,
                                               checkpoint=checkpoints.get(spec.weights, ""), source=source)
            if self.inputs[name].ran:
                self.sweeps[name] = experiments.sweep_for(
                    name, cfg.override, data_root=self.inputs[name].data_root, source=self.inputs[name].source,
                    checkpoint=self.inputs[name].checkpoint, folder=records_folder(name, cfg.profile),
                    device=cfg.device, seeds=seeds, cache=experiments.resolve_cache(paths.CACHE / "images"))
        self.ran = list(self.sweeps)
        self.records, self.summaries, self.runs = {}, {}, {}
        self.n_agree = self.n_made = 0  # set by orderings()

    def describe(self) -> str:
        """What each experiment ran on (:func:`describe`), one paragraph each."""
        return "\n\n".join(describe(self.inputs[n], self.sweeps.get(n), self.cfg.profile) for n in self.cfg.experiments)

    def plan(self) -> None:
        """Print what the sweeps will run (per experiment: how many LP, FT and LP-FT runs) and show the size of every
        set they read, or say that nothing was loaded."""
        if not self.ran:
            print("no data on this machine: nothing was loaded")
            return
        print("\n".join(f"{name}: {len(jobs(sw))} runs: LP × {len({str(lp_job(sw, s)) for s in sw.seeds})}, FT and "
                        f"LP-FT at {len(sw.ft_lrs)} and {len(sw.lpft_lrs)} learning rates × {len(sw.seeds)} seeds"
                        for name, sw in self.sweeps.items()))
        display(pd.concat({name: pd.Series(load_task(sw)[0].sizes) for name, sw in self.sweeps.items()})
                .rename("images").to_frame())

    def examples(self, name: str, px: int = 48) -> None:
        """Glue under ``name`` strips of each experiment's ID test and OOD sets as the loaders store them."""
        rows = []
        for experiment, sw in self.sweeps.items():
            task = load_task(sw)[0]
            rows += [(f"{experiment}: ID test", task.test_id),
                     *((f"{experiment}: OOD {k}", v) for k, v in task.ood.items())]
        plotting.finish(plotting.example_images(rows, px=px), name)

    def run(self) -> None:
        """Every record of the sweeps (running what is missing, reading back what is finished), their tables, and one
        printed line per experiment: its records' folder and their summed compute time."""
        for name, sw in self.sweeps.items():
            self.records[name] = run_sweep(sw)
            self.summaries[name] = tables.summarise(self.records[name])
            self.runs[name] = tables.runs_table(self.records[name])
            print(f"{name}: {len(self.records[name])} records in {paths.relative(sw.folder)}; compute time summed over "
                  f"runs: elapsed: {sum(r['results']['seconds'] for r in self.records[name]):.1f} s")

    def compare(self) -> pd.DataFrame:
        """This run next to the paper (:func:`lpft.scale.tables.compare_all`), after printing the paper's source."""
        print(paper.SOURCE)
        return tables.compare_all(self.cfg.experiments, self.summaries)

    def compare_figure(self, name: str, mark_unchecked: bool = False) -> None:
        """Glue under ``name`` the paper's accuracies and this run's; ``mark_unchecked``: the x labels say which of
        the paper's cells are not checked against any text."""
        compare = tables.compare_all(self.cfg.experiments, self.summaries)
        if mark_unchecked:
            unchecked = compare["checked"] == paper.UNCHECKED_LABEL
            compare = compare.assign(split=compare["split"].where(~unchecked, compare["split"] + ", unchecked"))
        plotting.finish(plotting.paper_vs_run(compare, self.cfg.profile, ran=bool(self.ran)), name)

    def methods(self) -> None:
        """Show every method of this run (:func:`lpft.scale.tables.methods_table`), one table per experiment."""
        for name in self.ran:  # one table per experiment: their OOD columns differ
            display(tables.methods_table(self.summaries[name], name).rename_axis(name))
        if not self.ran:
            print("not run on this machine")

    def orderings(self) -> pd.DataFrame:
        """The paper's comparisons, whether its tables show them (and whether those cells were checked against the
        submission) and whether this run does; prints how many this run agrees on."""
        orders, self.n_agree, self.n_made = tables.orderings_all(self.cfg.experiments, self.summaries)
        print(f"this run agrees with the paper on {self.n_agree} of {self.n_made} comparisons it could make")
        orders.insert(3, "paper checked", ["yes" if (experiments.experiment_of(e).id_set, "ID") in paper.CHECKED
                                           else paper.UNCHECKED_LABEL for e in orders["experiment"]])
        return orders

    def ratios(self) -> dict:
        """FT's feature change on ID inputs divided by LP-FT's, per experiment that ran."""
        return {name: s.loc["FT", "change ID"] / s.loc["LP-FT", "change ID"] for name, s in self.summaries.items()}

    def feature_change(self, name: str, official: bool = False) -> None:
        """Print, per experiment, FT's feature change against LP-FT's and whether it is larger on ID than on each OOD
        set; show the feature change of every method; with ``official``, the official code's Living-17 notebook
        outputs in the same unit; glue under ``name`` the figure of every selected run's change."""
        changes = {exp: _changes(s) for exp, s in self.summaries.items()}
        lines = []
        for exp, change in changes.items():
            side = ", ".join(f"{'larger' if change.loc['FT', 'ID'] > change.loc['FT', o] else 'smaller'} on ID than on "
                             f"{o} inputs" for o in change.columns if o != "ID")
            lines.append(f"{exp}: FT's feature change on ID inputs is {report.fmt(self.ratios()[exp])}× LP-FT's; "
                         f"FT's is {side}")
        print("\n".join(lines) or "not run on this machine")
        for exp, change in changes.items():
            change = change.rename(columns=lambda c: f"{c} inputs")
            change.index = ["pretrained (= LP)" if m == "LP" else m for m in change.index]
            display(report.table(change.reset_index(names=f"{exp}: model"), floor=0.0))
        if official:
            print(f"for scale, Living-17 ({paper.FEATURE_CHANGE_METRIC}, mean ± 90% over 3 runs), outputs of the "
                  f"official code's notebook, not the paper's text: {paper.OFFICIAL_NOTEBOOK}")
            display(paper.feature_change_official_notebook())
        longs = {exp: tables.feature_change_long(self.runs[exp]) for exp in self.ran}
        plotting.finish(plotting.feature_change_panels(longs), name)

    def learning_rates(self, name: str, shown: dict | None = None) -> None:
        """Glue under ``name`` the accuracy of every trained run against its learning rate, ID and one OOD column per
        experiment (``shown``: experiment -> column; default its first paper column), and show the mean over seeds
        per learning rate (:func:`lpft.scale.tables.lr_table`)."""
        shown = shown or {}
        fig = plotting.lr_panels({exp: (self.runs[exp], self.summaries[exp].loc["LP"],
                                        shown.get(exp, next(iter(experiments.experiment_of(exp).paper_ood))))
                                  for exp in self.ran})
        for exp in self.ran:
            display(tables.lr_table(self.runs[exp], exp).rename_axis([f"{exp}: method", "lr"]))
        if not self.ran:
            print("not run on this machine")
        plotting.finish(fig, name)

    def _keys(self, ood: dict | None, ids: dict | None) -> tuple[dict, dict]:
        ood = ood or {f"{_key(n)}_ood": (n, next(iter(experiments.experiment_of(n).paper_ood)))
                      for n in self.cfg.experiments}
        return ood, ids or {f"{_key(n)}_id": n for n in self.cfg.experiments}

    def glue_paper(self, prefix: str, ood: dict | None = None, ids: dict | None = None) -> None:
        """Glue the paper's accuracy of each method as ``<prefix>_paper_<method>_<key>`` for each ``ood`` key
        (key -> (experiment, OOD column); default ``<experiment>_ood``: its first column) and each ``ids`` key (key ->
        experiment; default ``<experiment>_id``)."""
        ood, ids = self._keys(ood, ids)
        for m in paper.METHODS:
            method = m.replace("-", "").lower()
            for key, (exp, col) in ood.items():
                glue.number(f"{prefix}_paper_{method}_{key}",
                            paper.OOD_ACCURACY[experiments.experiment_of(exp).paper_ood[col]][m][0], digits=3)
            for key, exp in ids.items():
                glue.number(f"{prefix}_paper_{method}_{key}",
                            paper.ID_ACCURACY[experiments.experiment_of(exp).id_set][m][0], digits=3)

    def glue_results(self, prefix: str, ood: dict | None = None, ids: dict | None = None) -> None:
        """Glue this run's numbers ("not run" where an experiment did not run): ``<prefix>_<method>_<key>`` as in
        :meth:`glue_paper`, ``<prefix>_lp_beats_ft_<key>`` per OOD key, ``<prefix>_change_ratio_<experiment>``,
        ``<prefix>_agree`` (after :meth:`orderings`) and ``<prefix>_mode``; prints the profile and what ran."""
        ood, ids = self._keys(ood, ids)
        for m in paper.METHODS:
            method = m.replace("-", "").lower()
            for key, (exp, col) in ood.items():
                glue.number(f"{prefix}_{method}_{key}",
                            self.summaries[exp].loc[m, col] if exp in self.ran else "not run", digits=3)
            for key, exp in ids.items():
                glue.number(f"{prefix}_{method}_{key}",
                            self.summaries[exp].loc[m, "ID"] if exp in self.ran else "not run", digits=3)
        for key, (exp, col) in ood.items():
            s = self.summaries.get(exp)
            glue.number(f"{prefix}_lp_beats_ft_{key}", "not run" if s is None else
                        "yes" if s.loc["LP", col] > s.loc["FT", col] else "no")
        ratios = self.ratios()
        for exp in self.cfg.experiments:
            glue.number(f"{prefix}_change_ratio_{_key(exp)}", ratios.get(exp, "not run"), digits=3)
        glue.number(f"{prefix}_agree", f"{self.n_agree} of {self.n_made}" if self.n_made else "none (nothing ran)")
        glue.number(f"{prefix}_mode", self.cfg.profile if self.ran else "full, without inputs")
        print(f"profile: {self.cfg.profile}; ran: {', '.join(self.ran) or 'nothing'}")


def _changes(summary: pd.DataFrame) -> pd.DataFrame:
    """The feature-change columns of a summary (means, not their ± columns), named by their input set (ID first)."""
    cols = [c for c in summary.columns if c.startswith("change ") and not c.endswith("±")]
    return summary[cols].rename(columns=lambda c: c.removeprefix("change "))

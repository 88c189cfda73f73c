"""One helper for the three paper-scale chapters: their inputs, their sweeps, what they print, their tables, figures and
glued numbers, one call per result block.

:class:`PaperScale` is made from a chapter's config (:func:`lpft.book.start_chapter`): for each experiment of the
chapter's profile, it resolves the inputs (the quick profile writes its generated files;
the full profile looks for the data and checkpoints and lists what is missing) and builds the
:class:`~lpft.scale.sweep.Sweep` of the experiment's settings (:func:`lpft.scale.experiments.sweep_for`; the quick
profile is the named ``smoke`` override of the paper's settings); it then runs or reads back every sweep the same way.

Only a full-profile run on the real files measures the paper's claims (:attr:`PaperScale.measured`). Every result
block shows this run next to the paper's numbers for those experiments, and for the others the paper's numbers alone,
labelled "not run here"; the quick profile's smoke run is shown only as the checklist of the stages it went through
(:meth:`PaperScale.checklist`), never beside the paper's numbers. How to run the paper's experiment (commands, files,
GPU time) is :meth:`PaperScale.how_to_run` (:mod:`lpft.book.scaleguide`).
"""
from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from lpft import paper, prose, report
from lpft.book import glue, paths, plotting, scaleguide
from lpft.book.profiles import CHAPTERS
from lpft.book.scaleguide import NOT_RUN
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
    """The command that runs ``experiment``'s chapter in the full profile on a GPU, with its inputs named
    (:func:`lpft.book.scaleguide.chapter_command` for that experiment alone)."""
    return scaleguide.chapter_command(chapter_of(experiment), (experiment,))


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
    """One paragraph (Markdown) for the chapter's first output: whether ``inputs.experiment`` ran here on its real
    files, what it ran on if so, and otherwise what ran instead (the quick profile's smoke test) or what is missing."""
    spec, name = experiments.experiment_of(inputs.experiment), inputs.experiment
    if not inputs.ran:
        return (f"**{name}: {NOT_RUN}.** The full profile looked for its inputs and did not find them:\n\n" +
                "\n".join(f"- {line}" for line in inputs.missing) +
                "\n\nOnce they are there, the command under *Running it on a GPU* runs it.")
    shape = (f"{sweep.arch} (width {sweep.width or 'as published'}), {sweep.image_size} px inputs, {sweep.epochs} "
             f"epochs, batch {sweep.batch_size}{f' as {sweep.accumulate} micro-batches' if sweep.accumulate > 1 else ''}"
             f", {len(sweep.seeds)} seeds, augmentation: {sweep.augment}"
             f"{f', LP by SGD ({sweep.lp_epochs} epochs)' if sweep.lp == 'sgd' else ''}, on {sweep.device}")
    if profile == "quick":
        return (f"**{name}: {NOT_RUN}.** This page ran the quick profile, a smoke test of the full profile's code: "
                f"generated images in the {spec.id_set} file layout and a random-weight {shape}, saved as a "
                f"{inputs.source} checkpoint. Its accuracies say nothing about {spec.id_set} and are not shown; the "
                f"checklist under *Every stage ran* says what it checked.")
    return (f"**{name}: run here** (full profile): {inputs.checkpoint.name} ({inputs.source}), {shape}" +
            (" (a CPU: expect days; this profile is meant for a GPU)." if sweep.device == "cpu" else "."))


def _key(name: str) -> str:
    return name.replace("-", "_")


class PaperScale:
    """A paper-scale chapter's experiments: ``inputs`` and ``sweeps`` (those whose inputs are all there: ``ran``) per
    experiment, and ``measured``, those of them that ran the paper's settings on the real files (the full profile);
    after :meth:`run`, their ``records``, ``summaries`` (:func:`lpft.scale.tables.summarise`) and ``runs``
    (:func:`lpft.scale.tables.runs_table`). Glued names start with ``prefix``; ``ood`` maps glued keys to (experiment,
    OOD column) and ``ids`` to experiments (defaults: ``<experiment>_ood``, its first paper column, and
    ``<experiment>_id``); ``changes``: other :class:`~lpft.scale.sweep.Sweep` fields of every sweep (tests)."""

    def __init__(self, cfg, *, prefix: str, ood: dict | None = None, ids: dict | None = None, data_root: str = "",
                 checkpoints: dict | None = None, source: str | None = None, changes: dict | None = None):
        self.cfg, self.prefix, checkpoints = cfg, prefix, checkpoints or {}
        self.ood = ood or {f"{_key(n)}_ood": (n, next(iter(experiments.experiment_of(n).paper_ood)))
                           for n in cfg.experiments}
        self.ids = ids or {f"{_key(n)}_id": n for n in cfg.experiments}
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
                    device=cfg.device, seeds=seeds, cache=experiments.resolve_cache(paths.CACHE / "images"),
                    **(changes or {}))
        self.ran = list(self.sweeps)
        self.measured = self.ran if cfg.override is None else []  # the smoke override measures nothing
        self.records, self.summaries, self.runs = {}, {}, {}
        self.n_agree = self.n_made = 0  # set by orderings()

    def describe(self) -> str:
        """What each experiment ran on (:func:`describe`), one paragraph each."""
        return "\n\n".join(describe(self.inputs[n], self.sweeps.get(n), self.cfg.profile) for n in self.cfg.experiments)

    def introduce(self) -> None:
        """Glue the paper's numbers the chapter's claim quotes (:meth:`glue_paper`) and show what ran here."""
        self.glue_paper()
        display(Markdown(self.describe()))

    def plan(self) -> None:
        """Show the paper's settings of the chapter's experiments (what the full profile runs); for those measured
        here, how many runs each sweep has and the size of every set it reads."""
        print("the paper's settings, which the full profile runs (lpft.scale.experiments):")
        with pd.option_context("display.max_colwidth", None):
            display(experiments.experiments_table().loc[list(self.cfg.experiments)].T)
        for name in self.measured:
            sw = self.sweeps[name]
            print(f"{name}: {len(jobs(sw))} runs: LP × {len({str(lp_job(sw, s)) for s in sw.seeds})}, FT and LP-FT "
                  f"at {len(sw.ft_lrs)} and {len(sw.lpft_lrs)} learning rates × {len(sw.seeds)} seeds")
            display(pd.Series(load_task(sw)[0].sizes).rename("images").to_frame().rename_axis(name))

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
            what = "" if name in self.measured else " (smoke run)"
            print(f"{name}{what}: {len(self.records[name])} records in {paths.relative(sw.folder)}; compute time "
                  f"summed over runs: elapsed: {sum(r['results']['seconds'] for r in self.records[name]):.1f} s")
        if not self.ran:
            print("no inputs on this machine: nothing ran")

    def _not_run(self, what: str, why: bool = False) -> None:
        missing = [n for n in self.cfg.experiments if n not in self.measured]
        if missing:
            print(f"{', '.join(missing)}: {what} {NOT_RUN}" + (" (only the full profile, run on the real files, "
                  "measures it: see 'Running it on a GPU')" if why else ""))

    def compare(self) -> pd.DataFrame:
        """The paper's accuracies (:func:`lpft.paper.table`), with this run's beside them for the experiments
        measured here (:func:`lpft.scale.tables.compare_all`)."""
        return tables.compare_all(self.cfg.experiments, {n: self.summaries[n] for n in self.measured})

    def accuracy(self, name: str, mark_unchecked: bool = False) -> None:
        """The result block of the paper's Tables 1-2: print the paper's source, show the paper's accuracies (and
        this run's where measured, with the difference) and glue under ``name`` their bars; ``mark_unchecked``: the x
        labels say which of the paper's cells are not checked against any text."""
        print(paper.SOURCE)
        self._not_run("accuracy:", why=True)
        compare = self.compare()
        missing = {"paper ±": "—", **({"this run": NOT_RUN} if "this run" in compare else {})}  # no interval held
        display(compare.round(1).astype({k: object for k in missing}).fillna(missing))
        if mark_unchecked:
            unchecked = compare["checked"] == paper.UNCHECKED_LABEL
            compare = compare.assign(split=compare["split"].where(~unchecked, compare["split"] + ",\nunchecked"))
        plotting.finish(plotting.paper_vs_run(compare, self.cfg.profile, ran=bool(self.measured)), name)

    def methods(self) -> None:
        """Show every method of the measured runs (:func:`lpft.scale.tables.methods_table`), one table per
        experiment."""
        self._not_run("WiSE-FT and L2-SP:")
        for name in self.measured:  # one table per experiment: their OOD columns differ
            display(tables.methods_table(self.summaries[name], name).rename_axis(name))

    def orderings(self) -> pd.DataFrame:
        """The paper's comparisons, whether its tables show them (and whether those cells were checked against the
        submission) and whether this run does (:data:`NOT_RUN` where not measured); prints how many this run agrees
        on."""
        orders, self.n_agree, self.n_made = tables.orderings_all(self.cfg.experiments,
                                                                 {n: self.summaries[n] for n in self.measured})
        if self.n_made:
            print(f"this run agrees with the paper on {self.n_agree} of {self.n_made} comparisons it could make")
        self._not_run("this run's column:")
        orders["this run"] = orders["this run"].replace("not run", NOT_RUN)
        orders.insert(3, "paper checked", ["yes" if (experiments.experiment_of(e).id_set, "ID") in paper.CHECKED
                                           else paper.UNCHECKED_LABEL for e in orders["experiment"]])
        return orders

    def ratios(self) -> dict:
        """FT's feature change on ID inputs divided by LP-FT's, per experiment measured."""
        return {n: self.summaries[n].loc["FT", "change ID"] / self.summaries[n].loc["LP-FT", "change ID"]
                for n in self.measured}

    def feature_change(self, name: str, official: bool = False) -> None:
        """Print, per experiment measured, FT's feature change against LP-FT's and whether it is larger on ID than on
        each OOD set; show the feature change of every method; with ``official``, the official code's Living-17
        notebook outputs in the same unit; glue under ``name`` the figure of every selected run's change."""
        changes = {exp: _changes(self.summaries[exp]) for exp in self.measured}
        for exp, change in changes.items():
            side = ", ".join(f"{'larger' if change.loc['FT', 'ID'] > change.loc['FT', o] else 'smaller'} on ID than on "
                             f"{o} inputs" for o in change.columns if o != "ID")
            print(f"{exp}: FT's feature change on ID inputs: {_ratio(self.ratios()[exp])}; FT's is {side}")
        self._not_run("feature change:")
        for exp, change in changes.items():
            change = change.rename(columns=lambda c: f"{c} inputs")
            change.index = ["pretrained (= LP)" if m == "LP" else m for m in change.index]
            display(report.table(change.reset_index(names=f"{exp}: model"), floor=0.0))
        if official:
            print(f"for scale, Living-17 ({paper.FEATURE_CHANGE_METRIC}, mean ± 90% over 3 runs), outputs of the "
                  f"official code's notebook, not the paper's text: {paper.OFFICIAL_NOTEBOOK}")
            display(paper.feature_change_official_notebook())
        longs = {exp: tables.feature_change_long(self.runs[exp]) for exp in self.measured}
        plotting.finish(plotting.feature_change_panels(longs, empty=f"{NOT_RUN}: no full run on this machine"), name)

    def learning_rates(self, name: str, shown: dict | None = None) -> None:
        """Glue under ``name`` the accuracy of every trained run against its learning rate, ID and one OOD column per
        experiment measured (``shown``: experiment -> column; default its first paper column), and show the mean over
        seeds per learning rate (:func:`lpft.scale.tables.lr_table`)."""
        shown = shown or {}
        fig = plotting.lr_panels({exp: (self.runs[exp], self.summaries[exp].loc["LP"],
                                        shown.get(exp, next(iter(experiments.experiment_of(exp).paper_ood))))
                                  for exp in self.measured}, empty=f"{NOT_RUN}: no full run on this machine")
        self._not_run("learning-rate sensitivity:")
        for exp in self.measured:
            display(tables.lr_table(self.runs[exp], exp).rename_axis([f"{exp}: method", "lr"]))
        plotting.finish(fig, name)

    def how_to_run(self) -> None:
        """Show :meth:`how_to_run_text`."""
        display(Markdown(self.how_to_run_text()))

    def how_to_run_text(self) -> str:
        """How to run the chapter's experiments at the paper's scale (Markdown): the commands, the files each
        experiment reads (the loaders' own lines) and the GPU time as far as a GPU measurement gives it."""
        sources = {n: self.inputs[n].source for n in self.cfg.experiments}
        paper_sweeps = {n: experiments.settings(n, None, sources[n]) for n in self.cfg.experiments}
        text = [f"The whole chapter in the full profile on one GPU (interrupted, it resumes where it stopped):\n\n"
                f"```bash\n{scaleguide.chapter_command(self.cfg.chapter, self.cfg.experiments, sources)}\n```\n\n"
                "Or each experiment's sweep first, locally or as Slurm job arrays (add `--executor slurm "
                "--slurm-partition <partition>`); the chapter then reads their records back:\n\n```bash\n" +
                "\n".join(scaleguide.sweep_command(n, sources[n]) for n in self.cfg.experiments) + "\n```"]
        for n in self.cfg.experiments:
            text.append(f"**{n}: the files it reads.** On a machine without them, its loaders report (paths under "
                        f"`${experiments.ENV_DATA_ROOT}`):\n\n" +
                        # a loader's line names paths as $LPFT_DATA_ROOT/...: set as code, or MyST reads $...$ as maths
                        "\n".join("- " + re.sub(r"(\$\w+[^\s,;()]*)", r"`\1`", line)
                                   for line in scaleguide.layout(n, sources[n])) +
                        f"\n\n{scaleguide.gpu_time(n, paper_sweeps[n])}")
        return "\n\n".join(text)

    def checks(self) -> pd.DataFrame:
        """Per experiment that ran here (the quick profile's smoke run or a full run), every stage it went through
        (:func:`lpft.book.scaleguide.checklist`: counts, never an accuracy), after :meth:`run`."""
        return pd.concat([scaleguide.checklist(self.sweeps[n], self.records[n], self.summaries[n])
                          for n in self.ran], ignore_index=True)

    def checklist(self) -> None:
        """Show :meth:`checks` (or that nothing ran); raise a RuntimeError naming the stages that failed."""
        if not self.ran:
            print("nothing ran here: no inputs on this machine")
            return
        checks = self.checks()
        with pd.option_context("display.max_colwidth", None):  # the whole of each check, untruncated
            display(checks.set_index(["experiment", "stage"]))
        failed = checks[checks["ran"] != "✓"]
        if len(failed):
            raise RuntimeError("stages that did not run as they should: " +
                               "; ".join(f"{e}: {s}" for e, s in zip(failed["experiment"], failed["stage"])))

    def glue_paper(self) -> None:
        """Glue the paper's accuracy of each method as ``<prefix>_paper_<method>_<key>`` for each ``ood`` key and
        each ``ids`` key."""
        for m in paper.METHODS:
            method = m.replace("-", "").lower()
            for key, (exp, col) in self.ood.items():
                glue.number(f"{self.prefix}_paper_{method}_{key}",
                            paper.OOD_ACCURACY[experiments.experiment_of(exp).paper_ood[col]][m][0], digits=3)
            for key, exp in self.ids.items():
                glue.number(f"{self.prefix}_paper_{method}_{key}",
                            paper.ID_ACCURACY[experiments.experiment_of(exp).id_set][m][0], digits=3)

    def glue_results(self) -> None:
        """Glue what this page found, :data:`NOT_RUN` for what it did not measure: ``<prefix>_run_<experiment>``
        (each method's ID and OOD accuracy), ``<prefix>_lp_beats_ft_<key>`` per ``ood`` key,
        ``<prefix>_change_<experiment>`` (FT's feature change on ID inputs against LP-FT's), ``<prefix>_agree`` (after
        :meth:`orderings`), ``<prefix>_verdict`` (the chapter's claims) and ``<prefix>_mode`` (what ran)."""
        p = self.prefix
        for exp in self.cfg.experiments:
            s = self.summaries.get(exp) if exp in self.measured else None
            cols = ["ID", *experiments.experiment_of(exp).paper_ood]
            glue.text(f"{p}_run_{_key(exp)}", NOT_RUN if s is None else ", ".join(
                f"{m} {' / '.join(prose.fixed(s.loc[m, c]) for c in cols)}" for m in paper.METHODS))
            glue.text(f"{p}_change_{_key(exp)}", _ratio(self.ratios()[exp]) if s is not None else NOT_RUN)
        for key, (exp, col) in self.ood.items():
            s = self.summaries.get(exp) if exp in self.measured else None
            glue.text(f"{p}_lp_beats_ft_{key}", NOT_RUN if s is None else
                      "yes" if s.loc["LP", col] > s.loc["FT", col] else "no")
        glue.text(f"{p}_agree", f"{prose.count(self.n_agree)} of {prose.count(self.n_made)}" if self.n_made
                  else NOT_RUN)
        glue.text(f"{p}_verdict", NOT_RUN if not self.measured else
                  f"measured on {', '.join(self.measured)}" + (f"; not run here: {', '.join(missing)}" if (
                      missing := [n for n in self.cfg.experiments if n not in self.measured]) else ""))
        glue.text(f"{p}_mode", "the full profile, on the real files" if self.measured else
                  "the quick profile, a smoke test that measures nothing" if self.cfg.override else
                  "the full profile, which found no inputs and ran nothing")


def _ratio(r: float) -> str:
    """FT's feature change against LP-FT's in words: ``"5.2× LP-FT's"``, ``"about as large as LP-FT's"``."""
    if not math.isfinite(r):
        return "not a ratio (LP-FT's feature change is zero)"
    return f"{prose.ratio(r)} LP-FT's"


def _changes(summary: pd.DataFrame) -> pd.DataFrame:
    """The feature-change columns of a summary (means, not their ± columns), named by their input set (ID first)."""
    cols = [c for c in summary.columns if c.startswith("change ") and not c.endswith("±")]
    return summary[cols].rename(columns=lambda c: c.removeprefix("change "))

"""Execute the book's chapters with papermill (the jupytext -> papermill pipe) and record how long each took.

    lpft-run                                   # every chapter, quick profile, into executed/
    lpft-run theory-bound --profile full --device cuda
    lpft-run --profile quick --out tests/baselines   # regenerate the regression baselines

Chapters run in the book's order (:data:`lpft.book.profiles.CHAPTERS`), up to ``--jobs`` at a time. A chapter that
reads what another chapter of the run computes (:data:`lpft.book.profiles.NEEDS`) waits until that one has finished,
and the next ready chapter takes its place. The front page (:data:`lpft.book.claims.FRONT`), which reads the other
chapters' verdicts, runs last, alone, once every other chapter of the run has finished, with the extra parameter
``executed`` (the output folder). The first chapter that
fails stops the run: its name, the failing cell and the error are printed, and the executed notebook, with its
traceback, is kept next to the others as ``<name>.failed.ipynb``. Each finished notebook is written atomically.
Each executed notebook carries its own provenance in ``metadata.lpft`` (:func:`stamp`: profile, seed, device, date,
wall time, git revision, library versions); the book shows it on the chapter's page (:mod:`lpft.book.sphinx_provenance`).
``run-log.json`` (the same records, one per chapter) and ``reproducibility.md`` (the same as a table, for the book's
Reproducibility page) are written to the output folder.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from lpft import numeric, records
from lpft.book import paths
from lpft.book.claims import FRONT
from lpft.book.profiles import CHAPTERS, DEVICES, NEEDS, PROFILES, resolve_device
from lpft.records import atomic_write_text, git_revision


class ChapterFailed(RuntimeError):
    pass


def environment() -> dict:
    """:func:`lpft.records.environment` and the sha256 of the pinned package list the run was made with."""
    lock_sha = hashlib.sha256(paths.LOCK.read_bytes()).hexdigest()[:16] if paths.LOCK.exists() else None
    return {**records.environment(), "lock_sha256": lock_sha}


def coalesce_streams(nb):
    """``nb`` with each cell's printed output merged into one stream per name (stdout, stderr). How a cell's prints
    are split into messages depends on timing (a run that computes records prints in bursts, one that reads them back
    all at once); the notebook regression tests compare executed notebooks after exactly this merge (pytest-notebook's
    ``coalesce_streams`` post-processor), so written notebooks and baselines get it too."""
    from pytest_notebook.post_processors import coalesce_streams as merge

    return merge(nb, {})[0]


def stamp(parameters: dict, seconds: float, context: dict) -> dict:
    """The provenance record of one executed chapter: its papermill ``parameters`` (profile, seed, requested device),
    wall ``seconds``, the UTC date it finished, and ``context`` (resolved device, git revision, environment)."""
    return {"profile": parameters["profile"], "seed": parameters["seed"], "requested_device": parameters["device"],
            "seconds": round(seconds, 2), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            **context}


def run_chapter(name: str, out: Path, parameters: dict, progress: bool, context: dict | None = None) -> dict:
    """Execute ``notebooks/<name>.py`` with ``parameters`` into ``out/<name>.ipynb``; returns its :func:`stamp`,
    which is also stored in the notebook's ``metadata.lpft``. ``context``: extra fields of the stamp (see :func:`run`).
    """
    import jupytext
    import nbformat
    import papermill as pm

    source = paths.NOTEBOOKS / f"{name}.py"
    if not source.exists():
        raise ChapterFailed(f"chapter {name!r}: source {source} does not exist")
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.running.ipynb"
    start = time.perf_counter()
    try:
        # the kernel runs in the notebooks folder: given to the kernel itself (nbclient's resources path), not through
        # papermill's cwd=, which changes the whole process's working directory and so, with chapters running in
        # parallel threads, the folder every relative path of another chapter is read against
        pm.execute_notebook(nb, str(tmp), parameters=parameters, kernel_name="python3", progress_bar=progress,
                            log_output=False, resources={"metadata": {"path": str(paths.NOTEBOOKS)}})
    except pm.PapermillExecutionError as err:
        failed = out / f"{name}.failed.ipynb"
        os.replace(tmp, failed)
        raise ChapterFailed(f"chapter {name!r} failed in cell {err.exec_count} (index {err.cell_index}): "
                            f"{err.ename}: {err.evalue}\n  executed notebook with the traceback: {failed}") from None
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    record = stamp(parameters, seconds, context or {})
    executed = coalesce_streams(nbformat.read(tmp, as_version=4))
    executed.metadata["lpft"] = {"chapter": name, **record}
    nbformat.write(executed, tmp)
    os.replace(tmp, out / f"{name}.ipynb")
    (out / f"{name}.failed.ipynb").unlink(missing_ok=True)
    return record


def describe_environment(env: dict) -> str:
    """One line naming the versions and machine of a run's :func:`environment`."""
    return (f"Python {env['python']}, torch {env['torch']}, NumPy {env['numpy']}, SciPy {env['scipy']} on "
            f"{env['platform']} ({env['cpu_count']} CPUs{', GPU ' + env['gpu'] if env.get('gpu') else ''}); "
            f"requirements-lock.txt sha256 `{env.get('lock_sha256')}`; {describe_numeric(env.get('numeric'))}")


def describe_numeric(numeric_env: dict | None) -> str:
    """How a run's numeric environment compares with the book's pinned one (:mod:`lpft.numeric`)."""
    if numeric_env is None:
        return "numeric environment not recorded"
    differ = numeric.problems(numeric_env)
    if not differ:
        return "numeric environment pinned (AVX2 kernels, one thread per process)"
    return "numeric environment NOT the book's (" + "; ".join(differ) + ")"


def rerun_command(name: str, rec: dict) -> str:
    """The ``lpft-run`` command that re-runs chapter ``name`` as recorded in ``rec``."""
    return f"lpft-run {name} --profile {rec['profile']} --seed {rec['seed']} --device {rec['requested_device']}"


def reproducibility_table(log: dict) -> str:
    """The Reproducibility page's table (MyST markdown) from a run log: one row per chapter, from that chapter's own
    record (the :func:`stamp` of its run; records from before stamps existed show "not recorded")."""
    envs: list[dict] = []
    lines = [f"The last `lpft-run` finished on {log['date']} at git revision `{log['git_revision']}` with "
             f"{describe_environment(log['environment'])}. Each row is the record of the run that executed that "
             f"chapter; its environment is listed below the table.", "",
             "| chapter | profile | seed | device | wall time (s) | executed (UTC) | git revision | environment "
             "| re-run it |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rec in log["chapters"].items():
        env = rec.get("environment")
        if env is not None and env not in envs:
            envs.append(env)
        rev = f"`{rec['git_revision']}`" if "git_revision" in rec else "not recorded"
        lines.append(f"| {name} | {rec['profile']} | {rec['seed']} | {rec['device']} | {rec['seconds']:.1f} "
                     f"| {rec.get('date', 'not recorded')} | {rev} "
                     f"| {envs.index(env) + 1 if env is not None else 'not recorded'} | `{rerun_command(name, rec)}` |")
    lines += [""] + [f"Environment {i + 1}: {describe_environment(env)}." for i, env in enumerate(envs)]
    total = sum(rec["seconds"] for rec in log["chapters"].values())
    lines += ["", f"Total wall time of these chapters: {total:.1f} s (summed over chapters; chapters may run in parallel)."]
    return "\n".join(lines) + "\n"


def next_ready(queue: list[str], running: set[str]) -> str | None:
    """The first chapter of ``queue`` that may start while ``running`` run: none of the chapters it needs
    (:data:`lpft.book.profiles.NEEDS`) is still queued or running, and the front page only once nothing else is."""
    for name in queue:
        if name == FRONT:
            if not running and queue == [FRONT]:
                return name
        elif not set(NEEDS.get(name, ())) & (set(queue) | running):
            return name
    return None


def run(chapters: list[str], profile: str, seed: int, device: str, out: Path, jobs: int = 1,
        progress: bool = True) -> dict:
    """Execute ``chapters`` and write ``run-log.json`` and ``reproducibility.md`` into ``out``; returns the log.

    Raises :class:`ChapterFailed` at the first failing chapter (chapters already running are allowed to finish).
    """
    from tqdm.auto import tqdm

    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        raise ChapterFailed(f"unknown chapter(s) {unknown}; known: {', '.join(CHAPTERS)}")
    if profile not in PROFILES:
        raise ChapterFailed(f"profile must be one of {PROFILES}; got {profile!r}")
    resolved = resolve_device(device)
    parameters = {"profile": profile, "seed": seed, "device": device}
    context = {"device": resolved, "git_revision": git_revision(), "environment": environment()}
    log_path = out / "run-log.json"
    previous = json.loads(log_path.read_text()) if log_path.exists() else {}
    records = dict(previous.get("chapters", {}))
    failure = None
    bar = tqdm(total=len(chapters), desc=f"chapters ({profile})", unit="chapter", disable=not progress)
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending = {}
        queue = [c for c in chapters if c != FRONT] + [c for c in chapters if c == FRONT]  # the front page last
        while queue or pending:
            while len(pending) < max(1, jobs) and failure is None:
                name = next_ready(queue, set(pending.values()))
                if name is None:
                    break
                queue.remove(name)
                given = {**parameters, "executed": paths.relative(out.resolve())} if name == FRONT else parameters
                pending[pool.submit(run_chapter, name, out, given, progress and jobs == 1, context)] = name
            if not pending:
                break
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                name = pending.pop(fut)
                try:
                    records[name] = fut.result()
                except ChapterFailed as err:
                    failure = failure or err
                    continue
                bar.update(1)
                bar.write(f"  {name}: {records[name]['seconds']:.1f} s")
            if failure is not None:
                queue.clear()
    bar.close()
    order = [c for c in CHAPTERS if c in records]
    log = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "git_revision": context["git_revision"], "environment": context["environment"],
           "chapters": {c: records[c] for c in order}}
    atomic_write_text(log_path, json.dumps(log, indent=2) + "\n")
    atomic_write_text(out / "reproducibility.md", reproducibility_table(log))
    if failure is not None:
        raise failure
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lpft-run", description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help=f"chapters to run (default: all): {', '.join(CHAPTERS)}")
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--out", type=Path, default=paths.EXECUTED, help="folder for executed notebooks")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at once (one CPU each)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    numeric.pin()  # the kernels this starts, and the workers they spawn, inherit the book's numeric environment
    try:
        run(args.chapters or list(CHAPTERS), args.profile, args.seed, args.device, args.out, args.jobs,
            progress=not args.no_progress)
    except (ChapterFailed, ValueError) as err:
        print(f"lpft-run: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

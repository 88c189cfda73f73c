"""A theory chapter's summary: the numbers its verdict rests on, kept as a record, archived for the full profile, and
shown next to the archived full-profile run.

The theory chapters compute in the notebook (no per-seed records), so each one ends by collecting its headline
numbers into a ``summary`` dict and calling :func:`side_by_side`. That keeps the summary as a result record
(:func:`lpft.records.run_once`: config, seed, library versions, git revision, code fingerprint, numeric environment,
written atomically) in ``results/<chapter>/<profile>/``; a ``full``-profile run also copies it into the committed
archive ``archive/<chapter>-full/`` (:func:`lpft.records.archive`), which a quick-profile page reads back and shows
beside its own numbers, with the archived run's provenance. As with every record, one already computed by the same
code for the same settings is read back rather than rewritten (so its date and revision are the first run's).
"""
from __future__ import annotations

import json
import math

import pandas as pd

from lpft import prose, records
from lpft.book import glue, paths
from lpft.report import FLOOR


def archive_folder(chapter: str):
    """Where the full-profile summary of ``chapter`` is committed."""
    return paths.ARCHIVE / f"{chapter}-full"


def keep(cfg, summary: dict, seconds: float) -> dict:
    """The record of this run's ``summary`` ({key: number}; ``seconds``: the chapter's compute time), kept in
    ``results/<chapter>/<profile>/``; a full-profile run also archives it. The record's config is the chapter's
    settings (``cfg`` from :func:`lpft.book.start_chapter`), seed and profile included."""
    bad = {k: v for k, v in summary.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    if bad:
        raise TypeError(f"a summary holds plain numbers; convert these with float() or int(): {bad}")
    config = {key: value for key, value in vars(cfg).items()}
    record = records.run_once(paths.results(cfg.chapter, cfg.profile), config,
                              lambda: {"summary": summary, "seconds": float(seconds)}, name="summary")
    if cfg.profile == "full":  # a full run refreshes the committed archive that quick-profile pages show
        records.archive([record], archive_folder(cfg.chapter), lambda r: f"seed{r['config']['seed']}.json")
    return record


def archived(chapter: str) -> dict | None:
    """The archived full-profile summary record of ``chapter`` (seed 0's), or None when there is none."""
    found = records.load_archive(archive_folder(chapter))
    return found[0] if found else None


def provenance(record: dict) -> str:
    """One paragraph on how an archived record was computed: date, revision, code, compute time, machine, versions and
    the numeric environment's pinned variables."""
    env, numeric = record["environment"], record["environment"].get("numeric", {})
    pins = ", ".join(f"{k}={v}" for k, v in numeric.get("variables", {}).items()) or "none recorded"
    return (f"archived {record['config']['profile']}-profile run: computed {record['date']} at git revision "
            f"{record['git_revision']}, code fingerprint {record['code_fingerprint']}, "
            f"seed {record['config']['seed']}; "
            f"compute time {record['results']['seconds']:.0f} s on {env['cpu_count']} CPU cores "
            f"({env['platform']}; GPU: {env['gpu'] or 'none'}); Python {env['python']}, torch {env['torch']}, "
            f"NumPy {env['numpy']}, SciPy {env['scipy']}; torch CPU kernels "
            f"{numeric.get('torch_cpu_capability', 'not recorded')}; pinned variables: {pins}")


def side_by_side(cfg, summary: dict, quantities: dict, seconds: float, prefix: str) -> pd.DataFrame:
    """Keep this run's ``summary`` (:func:`keep`) and return the table of each quantity in this run and in the
    archived full-profile run, printing the archive's provenance.

    ``quantities`` maps each key of ``summary`` to (what it is, significant digits) or (what it is, significant
    digits, floor): the digits are the ones the chapter uses for that number, and a nonzero value below ``floor``
    (default :data:`lpft.report.FLOOR`) prints as ``<floor``, as round-off does everywhere in the book. The archived
    values are glued as ``<prefix>_full_<key>`` (``"—"`` when there is no archive yet), and the archived run's
    settings that differ from this run's are listed.
    """
    missing = set(quantities) ^ set(summary)
    if missing:
        raise ValueError(f"summary and quantities must name the same keys; these are in only one: {sorted(missing)}")
    keep(cfg, summary, seconds)
    full = archived(cfg.chapter)
    values = full["results"]["summary"] if full else {}
    if full:
        print(provenance(full))
        mine = json.loads(json.dumps(vars(cfg), default=str))  # as the record holds it (tuples become lists)
        changed = {k: v for k, v in full["config"].items() if mine.get(k) != v and k not in ("profile", "device")}
        print("its settings that differ from this run's: "
              + ("; ".join(f"{k} = {v}" for k, v in changed.items()) or "none"))
    else:
        print(f"no archived full-profile run yet: `lpft-run {cfg.chapter} --profile full` writes "
              f"{paths.relative(archive_folder(cfg.chapter))}/")
    form = {k: (q[1], q[2] if len(q) > 2 else FLOOR) for k, q in quantities.items()}  # digits, floor
    glue.numbers(f"{prefix}_full", {k: values.get(k) for k in quantities}, form=form)
    show = lambda x, k: "—" if x is None or math.isnan(x) else prose.number(x, *form[k])  # noqa: E731
    return pd.DataFrame({"quantity": [q[0] for q in quantities.values()],
                         f"this run ({cfg.profile})": [show(summary[k], k) for k in quantities],
                         "archived full run": [show(values.get(k), k) for k in quantities]})

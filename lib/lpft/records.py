"""Result records: one JSON file per run (config, seed, results, library versions, git revision), written atomically.

Also the provenance every record carries (:func:`environment`, :func:`git_revision`, :func:`code_fingerprint`) and
the atomic writes (:func:`atomic_write`) that every cache and record of the library goes through.

A chapter calls :func:`run_once` for every (method, seed, ...) it needs: a finished record is read back instead of
re-run, so an interrupted sweep resumes where it stopped and never repeats a finished run. The chapter then reads all
records of a folder with :func:`load_records` and builds its tables from them.
"""
from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

PACKAGE = Path(__file__).resolve().parent


def atomic_write(path: Path, write) -> None:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which is then renamed
    over ``path``. If ``write`` fails, the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def git_revision(folder: Path = PACKAGE) -> str:
    """The commit checked out in the git work tree that holds ``folder`` (default: this library's own folder), with
    ``+dirty`` when tracked files differ from it; ``unknown`` outside a work tree (e.g. an installed wheel)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=folder, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment() -> dict:
    """Versions of what computes the book's numbers, the machine, and its numeric environment (the pinned variables'
    values and the CPU kernels PyTorch uses, :mod:`lpft.numeric`)."""
    import numpy
    import scipy
    import torch

    from lpft import numeric

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "numeric": numeric.state(blas=False)}


def _code_only(source: bytes) -> bytes:
    """The module's syntax tree without docstrings (comments are not in it): what the code computes, not how it is
    described. Rewording documentation therefore keeps every record valid; any change to the code does not."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def code_fingerprint(modules: tuple[str, ...] | None = None) -> str:
    """sha256 (16 hex digits) of the library's code: a record is valid only for the code that computed it.

    Each file enters as its syntax tree without docstrings and comments (:func:`_code_only`). ``modules`` (names such
    as ``"largescale"``) restricts it to those files, for long runs that should not be repeated after an edit of an
    unrelated module; default: every module.
    """
    paths = sorted(PACKAGE.rglob("*.py")) if modules is None else \
        [PACKAGE / f"{m.replace('.', '/')}.py" for m in sorted(modules)]
    return digest(*(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + _code_only(path.read_bytes())
                    for path in paths))


def canonical(obj) -> bytes:
    """``obj`` as canonical JSON (sorted keys; what JSON cannot hold written as ``str``), UTF-8: the bytes a config's
    key is computed from."""
    return json.dumps(obj, sort_keys=True, default=str).encode()


def digest(*chunks: bytes | str, length: int | None = 16) -> str:
    """sha256 of ``chunks`` concatenated (``str`` as UTF-8), as its first ``length`` hex digits (None: all 64): the one
    hash behind record keys (:func:`record_key`), code fingerprints, cache keys and content digests
    (:func:`lpft.checkpoints.tensors_digest`)."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk.encode() if isinstance(chunk, str) else chunk)
    return h.hexdigest()[:length]


def record_key(config: dict) -> str:
    """A short stable key for a run's config (sha256 of its canonical JSON, :func:`canonical`)."""
    return digest(canonical(config))


def stored(record: dict) -> dict:
    """``record`` as :func:`write_record` stores it and ``json.loads`` reads it back: keys sorted, tuples as lists,
    anything JSON cannot hold as its ``str``."""
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as JSON to ``path`` atomically (temporary file in the same folder, then rename)."""
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str))


def record_path(folder: Path, config: dict, name: str | None = None, code: str | None = None) -> Path:
    """Where :func:`run_once` keeps the record of ``config`` computed by library code ``code`` (default: the current
    :func:`code_fingerprint`)."""
    code = code_fingerprint() if code is None else code
    return Path(folder) / f"{name or 'run'}-{record_key({**config, 'code': code})}.json"


def run_once(folder: Path, config: dict, compute: Callable[[], dict], name: str | None = None,
             code: str | None = None) -> dict:
    """The record for ``config`` in ``folder``: read back if it exists, else ``compute()`` it and write it. Either way
the caller gets the record as it is stored (:func:`stored`), so that a page prints the same whether it computed its
records or read them back.

    The record holds ``config`` (which must include the seed), ``results`` (what ``compute`` returned), and the
    provenance: library versions, git revision and :func:`code_fingerprint`. A record made by other library code is
    not reused (its key differs), so editing ``lib/lpft`` re-runs the experiments that depend on it. ``code`` replaces
    that fingerprint (e.g. ``code_fingerprint(modules)`` of the modules the run depends on).
    """
    code = code_fingerprint() if code is None else code
    path = record_path(folder, config, name, code)
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("config") == stored(config):
            return record
    results = compute()
    record = {"config": config, "results": results, "environment": environment(), "git_revision": git_revision(),
              "code_fingerprint": code, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    write_record(path, record)
    return stored(record)


def archive(records: list[dict], folder: Path, name: Callable[[dict], str]) -> None:
    """Copy ``records`` into ``folder``, each as the file ``name(record)`` (the book commits full-profile runs this
    way; the chapters' namings: :func:`lpft.protocol.archive_name`, :func:`lpft.robustness.archive_name`)."""
    for record in records:
        write_record(Path(folder) / name(record), record)


def load_archive(folder: Path) -> list[dict]:
    """The records :func:`archive` wrote into ``folder`` (empty when there are none), sorted by their config's
    ``label`` (the variant, where records have one), then seed."""
    records = [json.loads(p.read_text()) for p in Path(folder).glob("*.json")]
    return sorted(records, key=lambda r: (r["config"].get("label", ""), r["config"]["seed"]))


def load_records(folder: Path) -> pd.DataFrame:
    """All records of ``folder`` as one table: config fields and result fields as columns (nested keys joined by
    '.')."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        rows.append({**record["config"], **record["results"], "git_revision": record["git_revision"],
                     "file": path.name})
    return pd.json_normalize(rows) if rows else pd.DataFrame()


def parallel_map(fn: Callable, args: list[tuple], jobs: int = 2) -> list:
    """``[fn(*a) for a in args]`` in ``jobs`` spawned processes (one torch thread each), in order; in-process when
    ``jobs <= 1``. ``fn`` must be importable (a module-level function)."""
    if jobs <= 1:
        return [fn(*a) for a in args]
    import concurrent.futures as cf
    import multiprocessing

    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, *zip(*args)))

"""The book's structure: every chapter source is in the TOC and the chapter registry, and nothing else is."""
import re
from pathlib import Path

import yaml

from lpft.book.profiles import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]


def toc_files(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                yield value
            else:
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def test_toc_sources_and_registry_agree():
    toc = list(toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text())))
    executed = [f.removeprefix("executed/") for f in toc if f.startswith("executed/")]
    sources = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert executed == list(CHAPTERS), "the TOC's chapter order must be the registry's (lpft.book.profiles.CHAPTERS)"
    assert sorted(executed) == sources
    for f in toc:
        if not f.startswith("executed/"):
            assert (ROOT / f"{f}.md").exists(), f"TOC entry {f} has no page"


def test_every_chapter_has_a_parameters_cell():
    import jupytext

    for name in CHAPTERS:
        nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, name
        for p in ("profile", "seed", "device"):
            assert f"{p} =" in params[0].source, (name, p)
        assert "start_chapter(" in "".join(c.source for c in nb.cells), name


def test_no_committed_notebooks_outside_baselines():
    """Executed notebooks are build artifacts; only the regression baselines are committed."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked, "the regression baselines must be committed"
    assert all(p.startswith("tests/baselines/") for p in tracked), tracked


def test_no_merge_conflict_markers_in_tracked_text():
    """A merge resolved by hand leaves no ``<<<<<<<`` / ``>>>>>>>`` lines behind (one did, in README.md)."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    marked = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".ipynb", ".json", ".png", ".pt") or not path.is_file():
            continue
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            continue
        if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in lines):
            marked.append(name)
    assert not marked, f"merge-conflict markers left in {marked}"


def test_environment_yml_wraps_the_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[dev]" in pip
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_no_rcparams_outside_lib():
    for nb in (ROOT / "notebooks").glob("*.py"):
        text = nb.read_text()
        assert "rcParams" not in text and "plt.style.use" not in text, nb


def test_no_pointers_to_documents_readers_do_not_have():
    """The book cites the papers, their public code and its own cells, never notes that only its authors had."""
    phrases = re.compile(r"reference notes|reference simulation|feasibility study|recalled|the issue lists|"
                         r"\(reference \d|reference section|of the reference\b", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}:{i}" for folder in ("notebooks", "book", "lib")
            for p in sorted((ROOT / folder).rglob("*")) if p.suffix in (".py", ".md")
            for i, line in enumerate(p.read_text().splitlines(), 1) if phrases.search(line)]
    assert not hits, f"pointers to documents the reader does not have: {hits}"

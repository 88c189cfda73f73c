"""The provenance box of a chapter page comes from the run that executed the chapter, and follows it when re-run.

A one-chapter book in a temporary folder: a tiny chapter is executed by the real ``lpft-run`` code (papermill), built
by Sphinx with the book's extension, re-executed in the other profile, and rebuilt incrementally, as a reader of the
book would do. Plus the extension's small parts (which pages are chapters, what a complete stamp is, the book's
browser assets).
"""
import io
import re
from pathlib import Path

import nbformat
import pytest
from sphinx.application import Sphinx
from sphinx.errors import ConfigError, SphinxWarning
from sphinx.util.docutils import docutils_namespace

from lpft.book import paths, sphinx_assets, sphinx_provenance
from lpft.book import run as execute

CHAPTER = "theory-invariants"  # a registered chapter name; its source here is a tiny stand-in
SOURCE = '''# %% [markdown]
# # A tiny chapter

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "auto"

# %%
print(f"executed in the {profile} profile")
'''
CONF = '''extensions = ["myst_nb", "lpft.book.sphinx_provenance"]
nb_execution_mode = "off"
exclude_patterns = ["_build", "notebooks", "executed/.*", "executed/*.md"]
'''


@pytest.fixture
def book(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / f"{CHAPTER}.py").write_text(SOURCE)
    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path / "notebooks")
    (tmp_path / "conf.py").write_text(CONF)
    (tmp_path / "index.md").write_text(f"# Book\n\n```{{toctree}}\nexecuted/{CHAPTER}\n```\n")
    return tmp_path


def build(book: Path) -> str:
    """Build (incrementally, like jupyter-book) with warnings as errors; returns the chapter page's HTML."""
    with docutils_namespace():  # each build registers its nodes and directives afresh
        app = Sphinx(str(book), str(book), str(book / "_build" / "html"), str(book / "_build" / "doctrees"), "html",
                     status=None, warning=io.StringIO(), warningiserror=True)
        app.build()
    return (book / "_build" / "html" / "executed" / f"{CHAPTER}.html").read_text()


def box_title(html: str) -> str:
    titles = re.findall(r'<div class="provenance dropdown admonition">\s*<p class="admonition-title">([^<]*)</p>', html)
    assert len(titles) == 1, "the chapter page must show exactly one provenance box"
    return titles[0]


def test_box_follows_the_run_that_executed_the_chapter(book):
    out = book / "executed"
    execute.run([CHAPTER], "quick", 0, "cpu", out, progress=False)
    html = build(book)
    stamp = nbformat.read(out / f"{CHAPTER}.ipynb", as_version=4).metadata["lpft"]
    assert box_title(html) == sphinx_provenance.summary(stamp)
    assert "quick profile on cpu" in box_title(html) and stamp["git_revision"] in html
    assert f"lpft-run {CHAPTER} --profile quick --seed 0 --device cpu" in re.sub(r"<[^>]+>", "", html)
    assert "executed in the quick profile" in html
    downloads = re.findall(r'class="reference download internal" download="" href="\.\./(_downloads/[^"]+)"', html)
    assert sorted(Path(d).name for d in downloads) == [f"{CHAPTER}.ipynb", f"{CHAPTER}.py"]
    assert all((book / "_build" / "html" / d).is_file() for d in downloads)

    execute.run([CHAPTER], "full", 3, "cpu", out, progress=False)  # re-run in the other profile, rebuild
    html = build(book)
    assert "full profile on cpu" in box_title(html)
    assert box_title(html) == sphinx_provenance.summary(nbformat.read(out / f"{CHAPTER}.ipynb", 4).metadata["lpft"])
    assert f"lpft-run {CHAPTER} --profile full --seed 3 --device cpu" in re.sub(r"<[^>]+>", "", html)
    assert "executed in the full profile" in html and "quick" not in box_title(html)


def test_run_log_and_reproducibility_table_hold_the_same_records(book):
    log = execute.run([CHAPTER], "quick", 1, "cpu", book / "executed", progress=False)
    stamp = nbformat.read(book / "executed" / f"{CHAPTER}.ipynb", as_version=4).metadata["lpft"]
    assert {"chapter": CHAPTER, **log["chapters"][CHAPTER]} == stamp
    table = (book / "executed" / "reproducibility.md").read_text()
    assert f"| {CHAPTER} | quick | 1 | cpu |" in table and stamp["date"] in table and stamp["git_revision"] in table


def test_a_chapter_page_without_a_stamp_fails_the_build(book):
    """A notebook not executed by lpft-run (e.g. by papermill by hand) has no provenance: the book refuses it."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A tiny chapter")])
    (book / "executed").mkdir()
    nbformat.write(nb, book / "executed" / f"{CHAPTER}.ipynb")
    with pytest.raises(SphinxWarning, match=f"no valid provenance stamp.*lpft-run {CHAPTER}"):
        build(book)


def test_which_pages_are_chapters_and_what_a_stamp_needs():
    assert sphinx_provenance.chapter_of(f"executed/{CHAPTER}") == CHAPTER
    assert sphinx_provenance.chapter_of("book/reproducibility") is None
    assert sphinx_provenance.chapter_of("executed/not-a-chapter") is None
    stamp = {"chapter": CHAPTER, "profile": "full", "seed": 0, "requested_device": "auto", "device": "cuda",
             "seconds": 1.0, "date": "2026-01-01 00:00 UTC", "git_revision": "abc",
             "environment": {"python": "3.11", "torch": "2", "numpy": "2", "scipy": "1", "platform": "linux",
                             "cpu_count": 16, "gpu": "NVIDIA H100"}}
    papermill = {"parameters": {"profile": "full", "seed": 0, "device": "auto"}}
    problems = sphinx_provenance.stamp_problems
    assert problems(CHAPTER, {"lpft": stamp, "papermill": papermill}) == []
    assert problems("theory-bound", {"lpft": stamp, "papermill": papermill}) == ["the stamp is for 'theory-invariants'"]
    partial = {k: v for k, v in stamp.items() if k != "git_revision"}
    assert problems(CHAPTER, {"lpft": partial, "papermill": papermill}) == ["no git_revision"]
    assert problems(CHAPTER, {"papermill": papermill}) == ["no metadata.lpft"]
    rerun = {"parameters": {**papermill["parameters"], "profile": "quick"}}  # re-run by hand, stamp left behind
    assert problems(CHAPTER, {"lpft": stamp, "papermill": rerun}) == \
        ["the stamp says profile 'full', papermill ran it with 'quick'"]
    box = sphinx_provenance.provenance_box(CHAPTER, stamp, f"/executed/{CHAPTER}.ipynb", f"/notebooks/{CHAPTER}.py")
    assert "cuda (NVIDIA H100)" in box.astext() and "--profile full" in box.astext()


def test_the_book_serves_its_own_mathjax_and_each_script_once():
    class App:
        srcdir = Path(__file__).resolve().parents[1]

        class config:
            mathjax_path = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
            lpft_mathjax_dir = "node_modules/mathjax"

    with pytest.raises(ConfigError, match="path under _static"):
        sphinx_assets.check_installed(App)
    App.config.mathjax_path, App.config.lpft_mathjax_dir = "mathjax/es5/tex-mml-chtml.js", "no/such/folder"
    with pytest.raises(ConfigError, match="npm ci"):
        sphinx_assets.check_installed(App)

    from sphinx.builders.html._assets import _JavaScript

    inline = "const THEBE_JS_URL = 'x'"
    scripts = [_JavaScript(None, body=inline), _JavaScript("doctools.js"), _JavaScript("", body=inline),
               _JavaScript("doctools.js"), _JavaScript("", body="other")]
    assert sphinx_assets.unique_scripts(scripts) == [scripts[0], scripts[1], scripts[4]]

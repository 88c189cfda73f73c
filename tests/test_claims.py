"""The front page's claims table (lpft.book.claims): one table of the paper's claims, every chapter declares its
verdicts, and the table is built from executed notebooks, failing by name when a verdict is missing."""
import re
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pandas as pd
import pytest

from lpft.book import claims, glue
from lpft.book.profiles import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]


def test_claims_table_structure():
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids)) and 8 <= len(ids) <= 12
    tested = {ch for c in claims.CLAIMS for ch in c.chapters}
    assert tested == set(CHAPTERS) - {claims.FRONT}, "every chapter tests a claim, and only chapters of the registry"
    assert set(claims.LABELS) == tested
    assert list(CHAPTERS)[0] == claims.FRONT, "the front page is the book's first page"
    for c in claims.CLAIMS:
        assert re.fullmatch(r"Section \d(\.\d)*(, (Theorem|Proposition) \d\.\d)?", c.section), c
        assert c.quote.strip() and "|" not in c.quote and len(set(c.chapters)) == len(c.chapters), c
        assert claims.claim(c.id) is c and claims.verdict_key(c.id).isidentifier()
    with pytest.raises(KeyError, match="unknown claim"):
        claims.claim("ft-is-always-better")


def test_each_chapter_links_to_its_label_and_declares_its_verdicts_last():
    for chapter, label in claims.LABELS.items():
        nb = jupytext.read(ROOT / "notebooks" / f"{chapter}.py")
        assert f"({label})=" in nb.cells[0].source, f"{chapter}: its first cell must carry the label ({label})="
        last = nb.cells[-1]
        assert last.cell_type == "code", f"{chapter}: the verdicts are its last cell"
        if chapter in claims.PAPER_SCALE:
            assert "claims.paper_scale_verdicts(chapter)" in last.source, chapter
            continue
        declared = re.findall(r'glue\.verdict\("([a-zA-Z-]+)"', last.source)
        if "claims.experiment_verdicts(" in last.source:  # the four claims of Section 4 a digit experiment tests
            declared += list(EXPERIMENT_CLAIMS)
        assert sorted(set(declared)) == sorted(c.id for c in claims.claims_of(chapter)), chapter


EXPERIMENT_CLAIMS = ("ft-id-lp-ood", "lpft-best", "id-features-change-more", "lpft-changes-less")


def test_by_count():
    assert [claims.by_count(h, 3) for h in (3, 1, 0)] == ["holds", "holds with a caveat", "fails"]
    with pytest.raises(ValueError):
        claims.by_count(4, 3)


def test_glue_verdict_refuses_bad_input(capsys):
    with pytest.raises(KeyError, match="unknown claim"):
        glue.verdict("no-such-claim", "holds", because="x")
    with pytest.raises(ValueError, match="a verdict is one of"):
        glue.verdict("lpft-best", "mostly", because="x")
    with pytest.raises(TypeError):
        glue.verdict("lpft-best", "holds", because=3.5)


VERDICT_CELL = """
from lpft.book import claims, glue
for i, c in enumerate(claims.CLAIMS):
    glue.verdict(c.id, claims.VERDICTS[i % len(claims.VERDICTS)], because=f"measured {i} | of {len(claims.CLAIMS)}")
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A folder of executed notebooks, one per chapter, each with the verdicts of its own claims as the kernel glued
    them (one notebook is executed, then each chapter's copy keeps only its own glue outputs)."""
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("executed")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(VERDICT_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    for chapter in claims.LABELS:
        keys = {k(c.id) for c in claims.claims_of(chapter) for k in (claims.verdict_key, claims.because_key)}
        copy = nbformat.from_dict(nb)
        copy.cells[0].outputs = [o for o in outputs if o.get("metadata", {}).get("scrapbook", {}).get("name") in keys]
        nbformat.write(copy, folder / f"{chapter}.ipynb")
    return folder


def test_table_from_executed_notebooks(executed):
    found = claims.findings(executed)
    assert [(f.claim.id, f.chapter) for f in found] == [(c.id, ch) for c in claims.CLAIMS for ch in c.chapters]
    first = found[0]
    assert first.verdict == claims.VERDICTS[0] and first.because == f"measured 0 | of {len(claims.CLAIMS)}"
    table = claims.table_markdown(found)
    lines = table.splitlines()
    assert len(lines) == 2 + len(found) and all(line.count(" | ") == 4 for line in lines[2:])  # "|" in text escaped
    assert "{ref}`ch-digits`" in table and "**holds with a caveat**" in table
    assert sum(claims.tally(found).values()) == len(found)


def test_a_removed_verdict_fails_by_name(executed, tmp_path):
    for p in executed.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    path = tmp_path / "theory-bound.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].outputs = [o for o in nb.cells[0].outputs
                           if o["metadata"]["scrapbook"]["name"] != claims.verdict_key("ft-ood-lower-bound")]
    nbformat.write(nb, path)
    with pytest.raises(claims.MissingVerdict, match=r"chapter 'theory-bound' declares no verdict on claim "
                                                    r"'ft-ood-lower-bound'"):
        claims.findings(tmp_path)
    path.unlink()
    with pytest.raises(claims.MissingVerdict, match="chapter 'theory-bound' has no executed notebook"):
        claims.findings(tmp_path)


def test_a_verdict_on_a_claim_not_listed_fails(executed, tmp_path):
    for p in executed.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    digits = nbformat.read(tmp_path / "experiments-digits.ipynb", as_version=4)
    bound = nbformat.read(tmp_path / "theory-bound.ipynb", as_version=4)
    bound.cells[0].outputs += digits.cells[0].outputs[:2]
    nbformat.write(bound, tmp_path / "theory-bound.ipynb")
    with pytest.raises(claims.MissingVerdict, match="chapter 'theory-bound' .* not listed under"):
        claims.findings(tmp_path)


class FakePaperScale:
    """What claims.paper_scale_verdicts reads of a PaperScale: cfg, measured, summaries."""

    def __init__(self, profile, ran, summaries=None):
        self.cfg = SimpleNamespace(chapter="experiments-cifar-stl", profile=profile, n_seeds=3)
        self.measured, self.summaries = ran, summaries or {}


def test_paper_scale_verdicts(capsys):
    quick = claims.paper_scale_verdicts(FakePaperScale("quick", ["cifar-stl"]))
    assert set(quick.values()) == {"not run here"}
    assert set(quick) == {c.id for c in claims.claims_of("experiments-cifar-stl")}
    assert set(claims.paper_scale_verdicts(FakePaperScale("full", [])).values()) == {"not run here"}
    s = pd.DataFrame({"ID": [91.8, 97.3, 97.5], "OOD STL-10": [85.1, 82.4, 90.7], "OOD CIFAR-10.1": [82.7, 92.3, 93.5],
                      "change ID": [0.0, 1.9, 0.1], "change ID ±": [0.0, 0.1, 0.0], "change STL-10": [0.0, 1.7, 0.09],
                      "change CIFAR-10.1": [0.0, 1.8, 0.1]}, index=["LP", "FT", "LP-FT"])  # the paper's numbers
    full = claims.paper_scale_verdicts(FakePaperScale("full", ["cifar-stl"], {"cifar-stl": s}))
    # FT is better than LP on CIFAR-10.1 (as in the paper), so "FT better ID, worse OOD" fails on this experiment
    assert full == {"ft-id-lp-ood": "fails", "lpft-best": "holds", "id-features-change-more": "holds",
                    "lpft-changes-less": "holds"}


def test_lpft_run_executes_the_front_page_last_with_the_output_folder(monkeypatch, tmp_path):
    """Whatever order and --jobs, the front page starts after every other chapter has finished, and only it gets the
    ``executed`` parameter (the output folder it reads the verdicts from)."""
    import threading
    import time

    from lpft.book import run as execute

    events, lock = [], threading.Lock()

    def fake_run_chapter(name, out, parameters, progress, context=None):
        with lock:
            events.append(("start", name, parameters.get("executed")))
        time.sleep(0.05)
        with lock:
            events.append(("end", name, None))
        return {"profile": parameters["profile"], "seed": parameters["seed"], "requested_device": parameters["device"],
                "device": "cpu", "seconds": 0.05}

    monkeypatch.setattr(execute, "run_chapter", fake_run_chapter)
    execute.run([claims.FRONT, "theory-bound", "theory-features", "fixed-point"], "quick", 0, "cpu", tmp_path, jobs=2,
                progress=False)
    front_start = events.index(("start", claims.FRONT, str(tmp_path.resolve())))
    assert {e[1] for e in events[:front_start] if e[0] == "end"} == {"theory-bound", "theory-features", "fixed-point"}
    assert [e[2] for e in events if e[0] == "start" and e[1] != claims.FRONT] == [None] * 3


def test_experiment_verdicts_follow_the_claims_table():
    import pandas as pd

    main = pd.DataFrame({"ID": [90.0, 97.0, 96.5], "ID ±": [0.5, 0.4, 0.4], "OOD": [70.0, 20.0, 69.0],
                         "OOD ±": [2.0, 3.0, 2.0]}, index=["LP", "FT", "LP-FT"])
    rows = ["ft id", "lp ood", "lpft ood", "lpft id", "distorts", "id more", "natural"]
    table = pd.DataFrame({"claim": rows, "holds": ["yes", "yes", "yes", "yes", "yes", "no", "yes"],
                          "measured": ["9/10 seeds", "10/10 seeds", "", "", "5.0×", "3 vs 4", ""]})
    v = claims.experiment_verdicts(table, {"main": main}, "a run")
    assert set(v) == set(EXPERIMENT_CLAIMS) == {c.id for c in claims.claims_of("experiments-digits-imagenet")}
    assert v["ft-id-lp-ood"][0] == "holds" and v["id-features-change-more"][0] == "fails"
    assert v["lpft-best"] == ("holds with a caveat", "a run: LP-FT 96.5% ID / 69.0% OOD against LP 90.0% ID / 70.0% "
                              "OOD and FT 97.0% ID / 20.0% OOD; LP-FT is within the 90% interval of the best ID, "
                              "within the 90% interval of the best OOD")
    assert v["lpft-changes-less"] == ("holds", "a run: FT changes the features 5.0× as much as LP-FT (ID inputs)")

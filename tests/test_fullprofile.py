"""lpft.book.fullprofile (a theory chapter's summary kept as a record, archived for the full profile and shown next
to the archived run) and lpft.book.glue.numbers (one glue call per result block)."""
import json
from types import SimpleNamespace

import pytest

from lpft.book import fullprofile, glue, paths


@pytest.fixture
def book(tmp_path, monkeypatch):
    """The book's results and archive folders moved into a temporary folder; glued values collected."""
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(paths, "ARCHIVE", tmp_path / "archive")
    glued = {}
    monkeypatch.setattr(glue, "glue", lambda name, value, display=False: glued.__setitem__(name, value))
    return glued


def cfg(profile, n=5):
    return SimpleNamespace(chapter="theory-features", profile=profile, seed=0, device="cpu", n_seeds=n,
                           eps_grid=(0.0, 0.1))


QUANTITIES = {"n": ("instances", 12), "slope": ("a slope", 2), "tiny": ("round-off", 1, 1e-30)}


def test_quick_run_without_an_archive_says_so_and_glues_dashes(book, capsys):
    table = fullprofile.side_by_side(cfg("quick"), {"n": 5, "slope": 2.0123, "tiny": 1.74e-15}, QUANTITIES, 1.0, "x")
    assert "no archived full-profile run yet" in capsys.readouterr().out
    assert table["this run (quick)"].tolist() == ["5", "2", "2e-15"]
    assert table["archived full run"].tolist() == ["—"] * 3
    assert book == {"x_full_n": "—", "x_full_slope": "—", "x_full_tiny": "—"}
    assert not (paths.ARCHIVE / "theory-features-full").exists()  # only a full run archives


def test_full_run_archives_and_a_quick_run_shows_it_with_provenance(book, capsys):
    fullprofile.side_by_side(cfg("full", 50), {"n": 50, "slope": 1.9876, "tiny": 3.1e-16}, QUANTITIES, 12.0, "x")
    files = list((paths.ARCHIVE / "theory-features-full").glob("*.json"))
    assert [f.name for f in files] == ["seed0.json"]
    record = json.loads(files[0].read_text())
    assert record["config"]["n_seeds"] == 50 and record["results"]["summary"]["slope"] == 1.9876
    assert {"git_revision", "code_fingerprint", "environment", "date"} <= set(record)
    capsys.readouterr()
    table = fullprofile.side_by_side(cfg("quick"), {"n": 5, "slope": 2.0123, "tiny": 1.74e-15}, QUANTITIES, 1.0, "x")
    out = capsys.readouterr().out
    assert f"git revision {record['git_revision']}" in out and "compute time 12 s" in out
    assert "differ from this run's: n_seeds = 50\n" in out  # only the settings that differ (a tuple is a list in JSON)
    assert table["archived full run"].tolist() == ["50", "2", "3e-16"]
    assert book["x_full_slope"] == "2" and book["x_full_n"] == "50"


def test_summary_and_quantities_must_agree_and_hold_plain_numbers(book):
    with pytest.raises(ValueError, match="only one"):
        fullprofile.side_by_side(cfg("quick"), {"n": 5}, QUANTITIES, 1.0, "x")
    with pytest.raises(TypeError, match="plain numbers"):
        fullprofile.keep(cfg("quick"), {"n": "5"}, 1.0)


def test_glue_numbers_one_call_per_block(book):
    out = glue.numbers("p", {"a": 0.123456, "b": 1.7e-16, "c": None}, form={"b": (1, 1e-30)})
    assert out == {"a": "0.123", "b": "2e-16", "c": "—"} and book == {"p_a": "0.123", "p_b": "2e-16", "p_c": "—"}
    with pytest.raises(ValueError, match="lacks"):
        glue.numbers("p", {"a": 1.0}, form={"z": (1, 1e-30)})

"""The chapter runner (lpft-run) and the parameters every chapter validates in its first cell."""
import json
from pathlib import Path

import pytest

from lpft.book import claims, paths, profiles
from lpft.book import run as execute
from lpft.records import atomic_write_text


def test_start_chapter_validates_parameters():
    cfg = profiles.start_chapter("theory-features", profile="quick", seed=3, device="cpu")
    assert cfg.profile == "quick" and cfg.seed == 3 and cfg.device == "cpu" and cfg.n_seeds > 0
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.start_chapter("theory-features", profile="fast", seed=0, device="cpu")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        profiles.start_chapter("theory-features", profile="quick", seed=-1, device="cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        profiles.start_chapter("theory-features", profile="quick", seed=0, device="tpu")
    with pytest.raises(ValueError, match="unknown chapter"):
        profiles.start_chapter("theory-nope", profile="quick", seed=0, device="cpu")


def test_cuda_without_gpu_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError, match="no GPU"):
        profiles.resolve_device("cuda")


def test_profiles_differ_only_in_values():
    for name, p in profiles.CHAPTERS.items():
        assert set(p) == set(profiles.PROFILES), name
        assert set(p["quick"]) == set(p["full"]), f"{name}: quick and full must set the same keys"


def test_cli_rejects_unknown_chapter(capsys, tmp_path):
    assert execute.main(["theory-nope", "--out", str(tmp_path)]) == 1
    assert "unknown chapter" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_failing_chapter_is_reported_and_leaves_no_result(tmp_path):
    """An invalid parameter fails in the chapter's first cell; the runner names chapter and cell, keeps the traceback."""
    with pytest.raises(execute.ChapterFailed) as err:
        execute.run_chapter("theory-features", tmp_path, {"profile": "fast", "seed": 0, "device": "cpu"},
                            progress=False)
    msg = str(err.value)
    assert "theory-features" in msg and "cell" in msg and "profile must be one of" in msg
    assert (tmp_path / "theory-features.failed.ipynb").exists()
    assert not (tmp_path / "theory-features.ipynb").exists()


def test_reproducibility_table():
    log = {"date": "2026-01-01 00:00 UTC", "git_revision": "abc",
           "environment": {"python": "3.11", "torch": "2.13.0", "numpy": "2", "scipy": "1", "platform": "linux",
                           "cpu_count": 2, "gpu": None},
           "chapters": {"theory-features": {"profile": "quick", "seed": 0, "requested_device": "auto",
                                            "device": "cpu", "seconds": 8.25}}}
    table = execute.reproducibility_table(log)
    assert "| theory-features | quick | 0 | cpu | 8.2 |" in table or "| theory-features | quick | 0 | cpu | 8.3 |" in table
    assert "lpft-run theory-features --profile quick --seed 0 --device auto" in table
    assert "torch 2.13.0" in table


def test_atomic_write(tmp_path):
    path = tmp_path / "a" / "log.json"
    atomic_write_text(path, json.dumps({"x": 1}))
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["log.json"]


def test_a_cells_prints_are_written_as_one_output_however_they_were_timed(tmp_path, monkeypatch):
    """Prints separated by a pause reach the notebook as separate messages; the written notebook holds one stream."""
    source = tmp_path / "notebooks"
    source.mkdir()
    (source / "theory-features.py").write_text(
        '# %% tags=["parameters"]\nprofile = "quick"\n\n'
        '# %%\nimport time\nfor i in range(3):\n    print(f"step {i}")\n    time.sleep(0.3)\n')
    monkeypatch.setattr(paths, "NOTEBOOKS", source)
    execute.run_chapter("theory-features", tmp_path / "out", {"profile": "quick", "seed": 0, "device": "cpu"},
                        progress=False)
    import nbformat

    nb = nbformat.read(tmp_path / "out" / "theory-features.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert [(o.output_type, o.name, o.text) for o in outputs] == [("stream", "stdout", "step 0\nstep 1\nstep 2\n")]


def test_chapters_run_in_parallel_into_a_relative_folder(tmp_path, monkeypatch):
    """Each chapter's kernel runs in the notebooks folder, while chapters running at once (threads) still write into
    the relative ``--out`` folder as the caller meant it. (With papermill's ``cwd=``, which changes the whole process's
    working directory, this failed in most runs: the race depends on the order the threads start in.)"""
    source = tmp_path / "notebooks"
    source.mkdir()
    pauses = {"theory-features": 0.2, "theory-bound": 1.5, "theory-beyond": 3.0}  # each ends while others run
    for name, pause in pauses.items():
        (source / f"{name}.py").write_text(f'# %% tags=["parameters"]\nprofile = "quick"\n\n'
                                           f'# %%\nimport os, time\ntime.sleep({pause})\nprint(os.getcwd())\n')
    monkeypatch.setattr(paths, "NOTEBOOKS", source)
    monkeypatch.chdir(tmp_path)
    log = execute.run(list(pauses), "quick", 0, "cpu", Path("out"), jobs=3, progress=False)
    assert set(log["chapters"]) == set(pauses)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "reproducibility.md", "run-log.json", "theory-beyond.ipynb", "theory-bound.ipynb", "theory-features.ipynb"]
    assert not (source / "out").exists()
    import nbformat

    for name in pauses:  # every kernel ran in the notebooks folder
        nb = nbformat.read(tmp_path / "out" / f"{name}.ipynb", as_version=4)
        assert nb.cells[-1].outputs[0].text.strip() == str(source)


def test_a_chapter_waits_for_the_chapter_whose_models_it_reads():
    """The digit-extra and fixed-point chapters read the digit chapter's cached models: in one run they start after it,
    and other chapters take the free slot meanwhile; the front page waits for everything."""
    queue = ["experiments-digits-extra", "theory-bound", "fixed-point", claims.FRONT]
    assert execute.next_ready(queue, {"experiments-digits"}) == "theory-bound"
    assert execute.next_ready(["experiments-digits-extra", "fixed-point", claims.FRONT],
                              {"experiments-digits"}) is None
    assert execute.next_ready(queue, set()) == "experiments-digits-extra"   # alone, a chapter computes what it misses
    assert execute.next_ready([claims.FRONT], {"fixed-point"}) is None
    assert execute.next_ready([claims.FRONT], set()) == claims.FRONT
    assert all(set(needs) <= set(profiles.CHAPTERS) and name in profiles.CHAPTERS
               for name, needs in profiles.NEEDS.items())


def test_a_needed_chapter_finishes_before_its_reader_starts(tmp_path, monkeypatch):
    source = tmp_path / "notebooks"
    source.mkdir()
    pauses = {"experiments-digits": 2.0, "fixed-point": 0.1, "theory-bound": 0.5}
    for name, pause in pauses.items():
        (source / f"{name}.py").write_text(f'# %% tags=["parameters"]\nprofile = "quick"\n\n'
                                           f'# %%\nimport time\nstart = time.time()\ntime.sleep({pause})\n'
                                           f'print(start, time.time())\n')
    monkeypatch.setattr(paths, "NOTEBOOKS", source)
    execute.run(list(pauses), "quick", 0, "cpu", tmp_path / "out", jobs=2, progress=False)
    import nbformat

    span = {name: [float(t) for t in nbformat.read(tmp_path / "out" / f"{name}.ipynb", as_version=4)
                   .cells[-1].outputs[0].text.split()] for name in pauses}
    assert span["fixed-point"][0] >= span["experiments-digits"][1]
    assert span["theory-bound"][0] < span["experiments-digits"][1]  # the free slot was used meanwhile

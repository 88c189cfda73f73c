"""The paper-scale chapters' helper (lpft.book.paperscale, lpft.book.scaleguide): without the real files, every
accuracy shown is the paper's, labelled "not run here", with the commands, the files each format reads and the GPU time
as far as a measurement gives it, and the smoke run is only a checklist of stages; with real files (here generated
ones, run in the full profile), the run's numbers stand next to the paper's; glued prose never says "times"."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from lpft import paper
from lpft.book import glue, paperscale, paths, plotting, scaleguide, start_chapter
from lpft.book.scaleguide import NOT_RUN
from lpft.scale import data, experiments

CS = "experiments-cifar-stl"
# the smoke setting made smaller: one epoch, one learning rate per method, no WiSE-FT or L2-SP, one seed
QUICK_CHANGES = dict(epochs=1, ft_lrs=(1e-2,), lpft_lrs=(1e-3,), l2sp_lrs=(), wise_alphas=(), feature_n=20)
TINY = replace(experiments.smoke("cifar-stl"), width=4, image_size=16)
# the full profile's sweep shrunk to the generated files' tiny network (what a GPU run does at the paper's sizes)
FULL_CHANGES = dict(arch="resnet18", width=4, image_size=16, epochs=1, batch_size=32, Cs=(0.1, 1.0), ft_lrs=(0.05,),
                    lpft_lrs=(0.01,), l2sp_lrs=(), wise_alphas=(), n_val=40, max_train=96, max_eval=40, feature_n=20,
                    progress=False)


@pytest.fixture
def glued(monkeypatch):
    found = {}

    def text(name, words):
        assert isinstance(words, str)
        found[name] = words
        return words

    monkeypatch.setattr(glue, "text", text)
    return found


def chapter_for(profile, tmp_path, monkeypatch, **kwargs):
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    cfg = start_chapter(CS, profile=profile, seed=0, device="cpu")
    cfg.n_seeds = 1
    return paperscale.PaperScale(cfg, prefix="cs", ood={"stl": ("cifar-stl", "OOD STL-10")}, ids={"id": "cifar-stl"},
                                 **kwargs)


@pytest.fixture
def quick(tmp_path, monkeypatch, glued):
    chapter = chapter_for("quick", tmp_path, monkeypatch, changes=QUICK_CHANGES)
    chapter.run()
    chapter.orderings()
    chapter.glue_results()
    return chapter


def test_the_quick_profile_shows_the_papers_numbers_only_and_its_smoke_run_as_a_checklist(quick, glued):
    assert quick.ran == ["cifar-stl"] and quick.measured == []  # the smoke run ran, and measures nothing
    compare = quick.compare()
    assert "this run" not in compare.columns and "difference" not in compare.columns
    assert compare["paper"].tolist() == paper.table([("CIFAR-10", "ID"), ("STL-10", "OOD"),
                                                     ("CIFAR-10.1", "OOD")])["paper"].tolist()
    assert set(quick.orderings()["this run"]) == {NOT_RUN} and (quick.n_agree, quick.n_made) == (0, 0)
    assert quick.ratios() == {}
    # every glued finding is "not run here"; the paper's numbers are glued by glue_paper, under their own names
    for name in ("cs_run_cifar_stl", "cs_change_cifar_stl", "cs_lp_beats_ft_stl", "cs_agree", "cs_verdict"):
        assert glued[name] == NOT_RUN, name
    assert "smoke" in glued["cs_mode"] and NOT_RUN in quick.describe()
    # the checklist: every stage, in counts; no accuracy of the smoke run in it
    checks = quick.checks()
    assert checks["stage"].tolist() == ["data in the format", "checkpoint in the format", "loaded", "trained",
                                        "evaluated", "records written", "tables built"]
    assert set(checks["ran"]) == {"✓"}
    accuracies = {f"{100 * v:.1f}" for r in quick.records["cifar-stl"]
                  for v in (r["results"]["id"], *r["results"]["ood"].values())}
    assert not any(a in " ".join(checks["checked"]) for a in accuracies if a not in ("0.0", "100.0"))
    assert "2 trained runs (FT, LP-FT, L2-SP) of 1 epoch" in " ".join(checks["checked"])


def test_without_a_measured_run_every_result_block_says_not_run_here(quick, monkeypatch, capsys):
    import matplotlib.pyplot as plt

    figures = {}
    monkeypatch.setattr(plotting, "finish", lambda fig, name: figures.update({name: fig}) or plt.close(fig))
    capsys.readouterr()
    quick.accuracy("compare")
    quick.methods()
    quick.feature_change("change")
    quick.learning_rates("lr")
    out = capsys.readouterr().out
    for what in ("accuracy:", "WiSE-FT and L2-SP:", "feature change:", "learning-rate sensitivity:"):
        assert f"cifar-stl: {what} {NOT_RUN}" in out
    assert "FT's feature change on ID inputs" not in out and "agrees" not in out
    assert [ax.get_title() for ax in figures["compare"].axes] == ["Kumar et al.: the paper's numbers, not run here"]
    for name in ("change", "lr"):
        assert [t.get_text() for ax in figures[name].axes for t in ax.texts] == [f"{NOT_RUN}: no full run on this "
                                                                                 f"machine"]


def test_the_no_data_page_gives_the_commands_the_files_and_the_gpu_time(quick):
    text = quick.how_to_run_text()
    assert "lpft-run experiments-cifar-stl --profile full --device cuda" in text
    assert "LPFT_CHECKPOINT=/path/to/moco_v2_800ep_pretrain.pth.tar" in text
    assert "lpft-sweep --experiment cifar-stl --profile full" in text
    # the files: the loaders' own lines, so the page cannot drift from them
    for how in data.format_of("cifar-stl").how_to_get.values():
        assert how in text
    assert "$LPFT_DATA_ROOT/cifar-10-batches-py/data_batch_1" in text and "stl10_binary/test_X.bin" in text
    # no GPU measurement in this repository's archive: none is given, only exact counts and the measuring command
    assert "no GPU measurement" in text and scaleguide.MEASURE in text
    sweep = experiments.settings("cifar-stl")
    passes = len(sweep.seeds) * (len(sweep.ft_lrs) + len(sweep.lpft_lrs) + len(sweep.l2sp_lrs)) * sweep.epochs
    assert passes == 3 * 18 * 20 and f"{passes:,} passes over the ID training set" in text


def test_a_failed_stage_shows_as_failed_and_stops_the_page(quick):
    sweep, records = quick.sweeps["cifar-stl"], quick.records["cifar-stl"]
    broken = [{**r, "results": {**r["results"], "id": math.nan}} if i == 1 else r for i, r in enumerate(records)]
    checks = scaleguide.checklist(sweep, broken, quick.summaries["cifar-stl"]).set_index("stage")["ran"]
    assert checks["evaluated"] == "✗" and checks["trained"] == "✓"
    assert scaleguide.checklist(sweep, records[:-1], quick.summaries["cifar-stl"]).set_index(
        "stage").loc["records written", "ran"] == "✗"
    nan_features = [{**r, "results": {**r["results"], "feature_change": {k: math.nan for k in
                                                                        r["results"]["feature_change"]}}}
                    if r["config"]["method"] == "FT" else r for r in records]
    evaluated = scaleguide.checklist(sweep, nan_features, quick.summaries["cifar-stl"]).set_index("stage").loc[
        "evaluated"]  # a diverged run is a result: named, not a failed stage
    assert evaluated["ran"] == "✓" and "non-finite features (diverged) in FT-lr0.01-seed0" in evaluated["checked"]
    quick.records["cifar-stl"] = broken
    with pytest.raises(RuntimeError, match="cifar-stl: evaluated"):
        quick.checklist()


def test_the_gpu_time_comes_only_from_a_passed_gpu_measurement(tmp_path):
    sweep = experiments.settings("cifar-stl")
    assert "no GPU measurement" in scaleguide.gpu_time("cifar-stl", sweep, root=tmp_path)
    result = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "sizes": "full", "date": "2026-12-01T10:00:00",
              "checks": [{"name": "projection", "status": "PASS",
                          "details": {"projected_sweep_hours": 12.345, "command": "benchmarks/largescale.py"}}]}
    (tmp_path / scaleguide.GPU_CHECK).parent.mkdir(parents=True)
    (tmp_path / scaleguide.GPU_CHECK).write_text(json.dumps(result))
    text = scaleguide.gpu_time("cifar-stl", sweep, root=tmp_path)
    assert "12.3 h on one NVIDIA H100 80GB HBM3" in text and "2026-12-01" in text and "1,080 passes" in text
    # the measurement projects CIFAR-10 -> STL-10 only; another row still has none
    assert "no GPU measurement" in scaleguide.gpu_time("living17", experiments.settings("living17"), root=tmp_path)
    for bad in ({"status": "FAIL"}, {"device": "cpu"}, {"sizes": "small"}):
        spoilt = {**result, **{k: v for k, v in bad.items() if k != "status"}}
        if "status" in bad:
            spoilt["checks"] = [{**result["checks"][0], "status": "FAIL"}]
        (tmp_path / scaleguide.GPU_CHECK).write_text(json.dumps(spoilt))
        assert scaleguide.gpu_measurement(tmp_path) is None, bad


def test_every_experiments_layout_is_its_loaders_own_description():
    for name in experiments.EXPERIMENTS:
        lines = scaleguide.layout(name)
        text = "\n".join(lines)
        assert all(how in text for how in data.format_of(name).how_to_get.values()), name
        assert f"${experiments.weights_of(name)[1]}" in text, name  # the checkpoint's variable
    assert "LPFT_CACHE=/path/to/fast/disk/cache" in scaleguide.chapter_command(
        "experiments-breeds-domainnet", ("living17", "entity30", "domainnet"))
    assert "LPFT_CACHE" not in scaleguide.chapter_command(CS, ("cifar-stl",))


def test_with_the_real_files_the_run_stands_next_to_the_paper(tmp_path, monkeypatch, glued):
    root, checkpoint = experiments.write_quick_inputs(tmp_path / "inputs", TINY)
    chapter = chapter_for("full", tmp_path, monkeypatch, data_root=str(root), checkpoints={"moco_v2": str(checkpoint)},
                          changes=FULL_CHANGES)
    assert chapter.measured == ["cifar-stl"] and "run here" in chapter.describe()
    chapter.run()
    compare = chapter.compare()
    assert compare["this run"].notna().all() and np.allclose(compare["difference"],
                                                             compare["this run"] - compare["paper"])
    orders = chapter.orderings()
    assert chapter.n_made == 5 and set(orders["this run"]) <= {"yes", "no"}
    chapter.glue_results()
    summary = chapter.summaries["cifar-stl"]
    assert glued["cs_run_cifar_stl"].startswith(f"LP {summary.loc['LP', 'ID']:.1f} / ")
    assert glued["cs_agree"] == f"{chapter.n_agree} of 5" and glued["cs_verdict"] == "measured on cifar-stl"
    assert glued["cs_lp_beats_ft_stl"] in ("yes", "no") and glued["cs_change_cifar_stl"].endswith("LP-FT's")
    assert set(chapter.checks()["ran"]) == {"✓"}
    assert not any("times" in v for v in glued.values())


def test_every_result_block_shows_a_measured_run(tmp_path, monkeypatch, glued, capsys):
    import matplotlib.pyplot as plt

    figures = {}
    monkeypatch.setattr(plotting, "finish", lambda fig, name: figures.update({name: fig}) or plt.close(fig))
    root, checkpoint = experiments.write_quick_inputs(tmp_path / "inputs", TINY)
    chapter = chapter_for("full", tmp_path, monkeypatch, data_root=str(root), checkpoints={"moco_v2": str(checkpoint)},
                          changes=FULL_CHANGES)
    chapter.introduce()
    chapter.plan()
    chapter.run()
    chapter.accuracy("compare")
    chapter.orderings()
    chapter.methods()
    chapter.feature_change("change", official=True)
    chapter.learning_rates("lr")
    chapter.checklist()
    out = capsys.readouterr().out
    assert NOT_RUN not in out and "cifar-stl: FT's feature change on ID inputs: " in out
    assert "this run agrees with the paper on" in out and paper.OFFICIAL_NOTEBOOK in out
    assert [ax.get_title() for ax in figures["compare"].axes] == ["Kumar et al. (paper)", "this run (full profile)"]
    assert len(figures["change"].axes) == 1 and len(figures["lr"].axes) == 2  # one experiment: its panels


@pytest.mark.parametrize("ratio, words", [(5.234, "5.23× LP-FT's"), (0.99996, "about as large as LP-FT's"),
                                          (1549.6, "1,550× LP-FT's"), (math.inf, "not a ratio (LP-FT's feature "
                                                                                 "change is zero)")])
def test_the_feature_change_ratio_reads_as_prose(ratio, words):
    assert paperscale._ratio(ratio) == words and "times" not in words

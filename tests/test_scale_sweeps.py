"""Sweeps of the paper-scale runs: a killed sweep loses no finished record and repeats no finished run, a killed run
resumes from its epoch checkpoint to the same result, the submitit executors give the same records as the inline
loop, and the summary selects learning rates as the paper did."""
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lpft import finetune, paper
from lpft.book import paperscale, paths, start_chapter
from lpft.scale import cli, experiments, tables, transforms
from lpft.scale import sweep as sweeps

IGNORED = ("seconds", "paths", "device")
TINY = replace(experiments.smoke("cifar-stl"), width=4, image_size=16)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return experiments.write_quick_inputs(tmp_path_factory.mktemp("inputs"), TINY)


def make_sweep(inputs, folder, **changes):
    data_root, checkpoint = inputs
    sweep = sweeps.Sweep(data_root=str(data_root), checkpoint=str(checkpoint), folder=str(folder), arch="resnet18",
                         width=4, seeds=(0, 1), Cs=(0.1, 1.0), ft_lrs=(0.05,), lpft_lrs=(0.01,), epochs=3,
                         image_size=16, batch_size=32, n_val=40, max_train=96, max_eval=40, feature_n=20)
    return replace(sweep, **changes)


def results(records):
    """Each run's results without the fields that legitimately differ between runs (time, paths, device)."""
    return {sweeps.job_name(r["config"]): {k: v for k, v in r["results"].items() if k not in IGNORED}
            for r in records}


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The uninterrupted sweep's records."""
    return results(sweeps.run_sweep(make_sweep(inputs, tmp_path_factory.mktemp("reference"))))


def test_jobs_cover_lp_once_and_every_lr_and_seed(inputs, tmp_path):
    sweep = make_sweep(inputs, tmp_path, ft_lrs=(0.1, 0.01), lpft_lrs=(0.001,), seeds=(3, 4, 5))
    jobs = sweeps.jobs(sweep)
    assert [j["method"] for j in jobs].count("LP") == 1 and len(jobs) == 1 + 2 * 3 + 1 * 3
    configs = [sweeps.job_config(sweep, j) for j in jobs]
    assert len({str(c) for c in configs}) == len(jobs)  # every run has its own identity
    assert "seed" not in configs[0] and configs[0]["common"]["backbone"]["sha256"]


class Interrupt(Exception):
    pass


def test_an_interrupted_sweep_resumes_without_losing_or_repeating_runs(inputs, tmp_path, reference, monkeypatch):
    sweep = make_sweep(inputs, tmp_path)
    epochs = []

    def interrupt_in_second_training_run(epoch):
        epochs.append(epoch)
        if len(epochs) == 5:  # FT seed 1, its second epoch (the first FT run took epochs 1-3)
            raise Interrupt

    with pytest.raises(Interrupt):
        sweeps.run_sweep(sweep, on_epoch_end=interrupt_in_second_training_run)
    done = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.glob("*.json"))
    assert done == ["FT-lr0.05-seed0", "LP"]  # LP and the first FT run finished and were recorded
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1  # the killed run's epoch checkpoint

    probes, trained = [], []
    real_probe, real_train = sweeps._linear_probe, finetune.train
    monkeypatch.setattr(sweeps, "_linear_probe", lambda *a: probes.append(1) or real_probe(*a))
    monkeypatch.setattr(finetune, "train", lambda *a, **k: trained.append(k["seed"]) or real_train(*a, **k))
    resumed_epochs = []
    records = sweeps.run_sweep(sweep, on_epoch_end=resumed_epochs.append)
    assert probes == []  # LP is not recomputed
    assert trained == [1, 0, 1]  # the killed FT run and the two LP-FT runs; the finished FT run is not repeated
    assert resumed_epochs == [3, 1, 2, 3, 1, 2, 3]  # the killed run resumed after its checkpointed epoch 2
    assert results(records) == reference  # bit-identical to the uninterrupted sweep on a CPU
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # checkpoints are removed once recorded
    again = sweeps.run_sweep(sweep, on_epoch_end=resumed_epochs.append)
    assert len(resumed_epochs) == 7 and results(again) == reference  # a finished sweep only reads its records


def test_a_sweep_killed_by_sigkill_resumes_to_the_same_records(inputs, tmp_path, reference):
    sweep = make_sweep(inputs, tmp_path)
    script = (f"import os, signal\nfrom lpft.scale import sweep as sweeps\nfrom lpft.scale.sweep import Sweep\n"
              f"sweep = {sweep!r}\n"
              "seen = []\n"
              "def hook(epoch):\n    seen.append(epoch)\n"
              "    if len(seen) == 5:\n        os.kill(os.getpid(), signal.SIGKILL)\n"
              "sweeps.run_sweep(sweep, on_epoch_end=hook)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.glob("*.json")) == ["FT-lr0.05-seed0", "LP"]
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes: no half-written file survives the kill
    assert results(sweeps.run_sweep(sweep)) == reference


def test_submitit_debug_executor_gives_the_inline_records(inputs, tmp_path, reference):
    records = sweeps.run_sweep(make_sweep(inputs, tmp_path / "records"), "debug", log_folder=tmp_path / "logs")
    assert results(records) == reference


def test_submitit_local_executor_runs_jobs_in_subprocesses(inputs, tmp_path):
    sweep = make_sweep(inputs, tmp_path / "records", seeds=(0,), epochs=1, lpft_lrs=())  # LP and FT: one stage
    records = sweeps.run_sweep(sweep, "local", parallel=2, log_folder=tmp_path / "logs", timeout_min=10)
    assert [r["config"]["method"] for r in records] == ["LP", "FT"]
    assert len(list((tmp_path / "logs").glob("*_log.out"))) == 2  # two submitit jobs ran
    assert results(sweeps.run_sweep(sweep)) == results(records)  # the inline loop only reads them back


def fake_record(method, lr, seed, val, id_acc, stl, change=1.0):
    config = {"method": method, **({} if method == "LP" else {"lr": lr, "seed": seed})}
    return {"config": config, "results": {"val": val / 100, "id": id_acc / 100,
                                          "ood": {"STL-10": stl / 100, "CIFAR-10.1": stl / 100},
                                          "feature_change": {"ID": change, "STL-10": change, "CIFAR-10.1": change},
                                          "best_epoch": 1, "seconds": 1.0}}


def test_summary_selects_the_lr_with_the_best_mean_validation_accuracy():
    records = [fake_record("LP", None, None, 70, 71, 60, 0.0),
               fake_record("FT", 0.1, 0, 80, 81, 50), fake_record("FT", 0.1, 1, 60, 61, 40),   # mean val 70
               fake_record("FT", 0.01, 0, 75, 76, 55), fake_record("FT", 0.01, 1, 74, 73, 57),  # mean val 74.5
               fake_record("LP-FT", 0.001, 0, 77, 78, 65), fake_record("LP-FT", 0.001, 1, 77, 80, 66)]
    summary = tables.summarise(records)
    assert summary.loc["FT", "lr"] == 0.01  # not 0.1, which has the best single seed
    assert summary.loc["FT", "ID"] == pytest.approx(74.5)
    assert summary.loc["FT", "ID ±"] == pytest.approx(1.645 * np.std([76, 73], ddof=1) / np.sqrt(2))
    assert summary.loc["LP", "ID ±"] == 0.0 and summary.loc["LP", "seeds"] == 1
    compare = tables.compare_with_paper(summary).set_index(["set", "method"])
    assert compare.loc[("STL-10", "LP-FT"), "paper"] == paper.OOD_ACCURACY["STL-10"]["LP-FT"][0]
    assert compare.loc[("STL-10", "LP-FT"), "difference"] == pytest.approx(65.5 - 90.7)
    assert compare.loc[("CIFAR-10", "FT"), "this run"] == pytest.approx(74.5)


def test_the_full_profile_is_the_papers_grid():
    full = experiments.sweep_for("cifar-stl", data_root="d", checkpoint="c", folder="f", device="cuda")
    assert (full.arch, full.width, full.epochs, full.batch_size, full.image_size) == ("resnet50", 64, 20, 64, 224)
    assert full.ft_lrs == (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2) and full.lpft_lrs == (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)
    assert len(full.Cs) == 50 and np.isclose(full.Cs[0], 1e-7) and np.isclose(full.Cs[-1], 100.0)
    assert full.seeds == (0, 1, 2) and full.runtime().precision == "bf16" and full.runtime().channels_last
    quick = experiments.sweep_for("cifar-stl", "smoke", data_root="d", checkpoint="c", folder="f", device="cpu",
                                  seeds=(5, 6))
    assert quick.seeds == (5, 6) and quick.runtime().precision == "fp32"


def test_missing_inputs_are_listed_and_the_command_line_refuses_to_start(tmp_path, capsys):
    lines = experiments.missing_inputs(tmp_path / "data", tmp_path / "moco.pth.tar")
    assert len(lines) == 4 and any("cifar-10-batches-py" in line for line in lines)
    assert any("moco_v2_800ep_pretrain.pth.tar" in line for line in lines)
    assert cli.main(["--data-root", str(tmp_path / "data"), "--checkpoint", str(tmp_path / "x.pt")]) == 1
    assert "stl10_binary" in capsys.readouterr().err


def test_command_line_runs_a_profile_into_records(inputs, tmp_path, monkeypatch, capsys):
    tiny = dict(width=4, epochs=1, image_size=16, ft_lrs=(0.05,), lpft_lrs=(0.01,), wise_alphas=(), l2sp_lrs=(),
                Cs=(1.0,), n_val=40, max_train=64, max_eval=20)
    data_root, checkpoint = inputs
    monkeypatch.setenv(experiments.ENV_DATA_ROOT, str(data_root))
    assert cli.main(["--profile", "quick", "--checkpoint", str(checkpoint), "--device", "cpu", "--seeds", "1",
                     "--folder", str(tmp_path), "--set", "width=4", "--set", "epochs=1", "--set", "image_size=16",
                     "--set", "ft_lrs=0.05", "--set", "lpft_lrs=0.01", "--set", "wise_alphas=", "--set", "l2sp_lrs=",
                     "--set", "Cs=1.0", "--set", "n_val=40", "--set", "max_train=64", "--set", "max_eval=20"]) == 0
    out = capsys.readouterr().out
    assert "3 records" in out and "LP-FT" in out and len(list(Path(tmp_path).glob("*.json"))) == 3
    assert isinstance(tables.summarise(sweeps.run_sweep(experiments.sweep_for(
        "cifar-stl", "smoke", data_root=data_root, checkpoint=checkpoint, folder=tmp_path, device="cpu", seeds=(0,),
        **tiny))), pd.DataFrame)
    assert len(list(Path(tmp_path).glob("*.json"))) == 3  # the command line's records are the sweep's: none added


def test_slurm_submission_asks_for_one_gpu_per_job_and_the_options(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"  # submitit's Slurm executor only starts where srun exists
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    sweep = sweeps.Sweep(data_root="d", checkpoint="c", folder=str(tmp_path), device="cuda",
                         slurm={"slurm_partition": "gpu", "cpus_per_task": 8, "mem_gb": 64})
    ex = sweeps.submitit_executor(sweep, "slurm", parallel=4, log_folder=tmp_path / "logs", timeout_min=600)
    script = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB", "--time=600",
                 "--ntasks-per-node=1"):
        assert f"#SBATCH {line}" in script, line
    assert ex._executor.parameters["array_parallelism"] == 4


BD = "experiments-breeds-domainnet"
BD_TINY = dict(width=4, image_size=32, load_size=36, epochs=1, ft_lrs=(0.01,), lpft_lrs=(0.001,), wise_alphas=(),
               l2sp_lrs=(), Cs=(0.1, 1.0), feature_n=20)


def tiny_sweep(tmp_path, experiment):
    data_root, checkpoint = experiments.write_quick_inputs(tmp_path / "inputs",
                                                           replace(experiments.smoke(experiment), **BD_TINY))
    return experiments.sweep_for(experiment, "smoke", data_root=data_root, checkpoint=checkpoint,
                                 folder=tmp_path / "records", device="cpu", **BD_TINY)


def lp_ft_starts(monkeypatch) -> dict:
    """Record, per seed, the LP head each LP-FT run starts from (filled in as the sweep runs)."""
    starts, real = {}, finetune.lp_ft
    monkeypatch.setattr(finetune, "lp_ft", lambda start, task, **k: starts.setdefault(
        k["seed"], start.head.weight.detach().clone()) is None or real(start, task, **k))
    return starts


def test_augmented_experiments_probe_once_per_seed_and_lp_ft_starts_from_its_seeds_head(tmp_path, monkeypatch):
    sweep = tiny_sweep(tmp_path, "living17")
    assert (sweep.augment, sweep.centre_crop, sweep.n_val, sweep.arch) == ("random-resized-crop", True, None,
                                                                           "resnet18")
    assert [sweeps.job_name(j) for j in sweeps.jobs(sweep)] == [
        "LP-seed0", "LP-seed1", "FT-lr0.01-seed0", "FT-lr0.01-seed1", "LP-FT-lr0.001-seed0", "LP-FT-lr0.001-seed1"]
    starts = lp_ft_starts(monkeypatch)
    records = {sweeps.job_name(r["config"]): r for r in sweeps.run_sweep(sweep)}
    lp = {s: sweeps.probe_of(records[f"LP-seed{s}"]).W for s in (0, 1)}
    assert not np.array_equal(lp[0], lp[1])  # each seed probes its own augmented view
    assert all(torch.equal(starts[s], torch.from_numpy(lp[s]).float()) for s in (0, 1))  # the head, in float32
    assert records["LP-seed1"]["config"]["seed"] == 1
    summary = tables.summarise(list(records.values()))
    assert summary.loc["LP", "seeds"] == 2 and summary.loc["LP", "ID ±"] >= 0
    compare = tables.compare_with_paper(summary, "living17").set_index(["set", "split", "method"])
    assert compare.loc[("Living-17", "OOD", "FT"), "paper"] == paper.OOD_ACCURACY["Living-17"]["FT"][0]
    assert compare.loc[("Living-17", "ID", "FT"), "paper"] == paper.ID_ACCURACY["Living-17"]["FT"][0]
    assert compare.loc[("Living-17", "OOD", "LP"), "this run"] == summary.loc["LP", "OOD Living-17 target"]


def test_domainnet_reports_the_mean_over_its_three_ood_domains(tmp_path):
    sweep = replace(tiny_sweep(tmp_path, "domainnet"), seeds=(0,))
    assert (sweep.source, sweep.arch, sweep.accumulate, sweep.augment) == ("clip", "RN50", 2, "random-crop")
    assert sweep.runtime().mean == sweeps.clip.CLIP_MEAN
    runs = tables.runs_table(sweeps.run_sweep(sweep))
    assert np.allclose(runs["OOD mean"], runs[["OOD clipart", "OOD painting", "OOD real"]].mean(axis=1))
    compare = tables.compare_with_paper(tables.summarise(sweeps.run_sweep(sweep)), "domainnet")
    assert list(zip(compare["set"], compare["split"]))[::3] == [("DomainNet", "ID"), ("DomainNet", "OOD")]
    order = tables.orderings(tables.summarise(sweeps.run_sweep(sweep)), "domainnet").set_index("comparison")
    assert order.loc["FT > LP on ID (DomainNet)", "paper"] == "no"  # the paper's FT is worse than LP even ID
    assert order.loc["LP > FT on OOD mean (DomainNet)", "paper"] == "yes"
    assert set(tables.orderings(None, "domainnet")["this run"]) == {"not run"}


def test_each_experiments_full_profile_has_the_papers_settings():
    def full(experiment):
        return experiments.sweep_for(experiment, data_root="d", checkpoint="c", folder="f", device="cuda",
                                     cache=experiments.resolve_cache())

    for name in ("living17", "entity30"):
        s = full(name)
        assert (s.source, s.arch, s.width, s.epochs, s.batch_size, s.accumulate) == ("moco_v2", "resnet50", None, 20, 64,
                                                                                     1)
        assert (s.augment, s.centre_crop, s.load_size, s.image_size, s.n_val) == ("random-resized-crop", True, 256,
                                                                                  224, None)
        assert s.cache == str(experiments.resolve_cache())  # decoded once into the disk cache, not held in RAM
    d = full("domainnet")
    assert (d.source, d.arch, d.epochs, d.batch_size, d.accumulate, d.augment, d.load_size) == (
        "clip", "RN50", 50, 32, 2, "random-crop", 256)
    assert d.runtime().precision == "bf16" and d.seeds == (0, 1, 2) and len(d.Cs) == 50 and d.cache == ""
    assert full("living17").lpft_lrs == (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.sweep_for("imagenet-21k", data_root="d", checkpoint="c", folder="f", device="cpu")
    f = full("fmow")
    assert (f.source, f.arch, f.epochs, f.batch_size, f.augment, f.n_val, f.lp, f.cache) == (
        "moco_v2", "resnet50", 50, 64, "none", None, "logistic", "")
    grids = experiments.GRIDS
    assert f.ft_lrs == grids["ft"] and f.l2sp_lrs == grids["ft"] and f.lpft_lrs == grids["lpft"]
    i = full("imagenet")
    assert (i.source, i.arch, i.width, i.epochs, i.batch_size, i.n_val, i.lp, i.lp_epochs, i.lp_lr) == (
        "clip", "ViT-B-16", None, 10, 128, None, "sgd", 5, 0.1)
    assert (i.ft_lrs, i.lpft_lrs) == ((1e-4, 3e-4, 1e-3), (1e-5, 3e-5, 1e-4))
    assert i.cache == str(experiments.resolve_cache())
    assert i.runtime().mean == sweeps.clip.CLIP_MEAN and i.tower == ()
    # the input std of the paper's configs: 0.228 for red in CIFAR -> STL and BREEDS, the backbone's usual elsewhere
    for name in ("cifar-stl", "living17", "entity30"):
        assert full(name).runtime().std == (0.228, 0.224, 0.225) == experiments.PAPER_STD
    assert all(full(name).n_val is None for name in experiments.EXPERIMENTS)  # the paper selects on the ID test set
    assert f.runtime().std == sweeps.transforms.IMAGENET_STD and i.runtime().std == sweeps.clip.CLIP_STD
    assert experiments.experiments_table().loc["living17", "input std"] == "0.228 0.224 0.225"


def test_missing_breeds_and_domainnet_inputs_name_the_files_and_the_command(tmp_path, capsys):
    lines = experiments.missing_inputs(tmp_path, tmp_path / "RN50.pt", "domainnet", "clip")
    assert any("domainnet/lists" in line for line in lines) and any("RN50" in line for line in lines)
    assert cli.main(["--experiment", "living17", "--data-root", str(tmp_path), "--checkpoint",
                     str(tmp_path / "moco.pth.tar")]) == 1
    err = capsys.readouterr().err
    assert "breeds/living17.json" in err and "moco_v2_800ep_pretrain.pth.tar" in err
    assert "LPFT_CLIP_CHECKPOINT" in paperscale.full_command("domainnet") and BD in paperscale.full_command("entity30")
    # the chapter's records are where lpft-sweep, run from the repository, writes them
    assert paperscale.records_folder("entity30", "full") == paths.RESULTS / "paper-scale" / "full" / "entity30"
    assert paperscale.records_folder("entity30", "full") == cli.records_folder(paths.RESULTS, "entity30", "full")


def test_wise_ft_ends_reproduce_lp_and_ft_and_l2_sp_runs_over_its_grid(inputs, tmp_path):
    sweep = make_sweep(inputs, tmp_path, seeds=(0,), lpft_lrs=(), wise_alphas=(0.0, 1.0), l2sp_lrs=(0.05,), epochs=1,
                       l2sp_weight=0.0)  # without its penalty, L2-SP is FT
    assert [sweeps.job_name(j) for j in sweeps.jobs(sweep)] == ["LP", "FT-lr0.05-seed0", "L2-SP-lr0.05-seed0"]
    runs = tables.runs_table(sweeps.run_sweep(sweep)).set_index(["method", "alpha"], drop=False)
    accuracy = ["val", "ID", "OOD CIFAR-10.1", "OOD STL-10"]
    lp, ft = runs[runs["method"] == "LP"].iloc[0], runs[runs["method"] == "FT"].iloc[0]
    wise0, wise1 = runs.loc[("WiSE-FT", 0.0)], runs.loc[("WiSE-FT", 1.0)]
    assert np.allclose(wise0[accuracy].astype(float), lp[accuracy].astype(float))  # alpha 0: the LP model
    assert np.allclose(wise1[accuracy + ["change ID"]].astype(float), ft[accuracy + ["change ID"]].astype(float))
    assert wise0["change ID"] == 0.0 and wise0["lr"] == 0.05
    l2sp = runs[runs["method"] == "L2-SP"].iloc[0]
    assert np.allclose(l2sp[accuracy + ["change ID"]].astype(float), ft[accuracy + ["change ID"]].astype(float))
    weighted = sweeps.run_job(replace(sweep, l2sp_weight=0.5), {"method": "L2-SP", "lr": 0.05, "seed": 0})
    assert weighted["config"]["weight"] == 0.5 and weighted["results"]["feature_change"]["ID"] != l2sp["change ID"]
    summary = tables.summarise(sweeps.run_sweep(sweep))
    assert list(summary.index) == ["LP", "FT", "WiSE-FT", "L2-SP"]
    assert "OOD STL-10 (STL-10)" not in tables.methods_table(summary, "cifar-stl").columns


def test_wise_ft_selects_the_learning_rate_and_alpha_together():
    def wise(lr, seed, alpha_vals):
        record = fake_record("FT", lr, seed, 50, 50, 50)
        record["results"]["wise"] = {f"{a:g}": {"val": v / 100, "id": v / 100, "ood": {"STL-10": 0.5, "CIFAR-10.1": 0.5},
                                                "feature_change": {"ID": 0.0, "STL-10": 0.0, "CIFAR-10.1": 0.0}}
                                     for a, v in alpha_vals.items()}
        return record

    records = [fake_record("LP", None, None, 70, 71, 60, 0.0),
               wise(0.1, 0, {0.25: 90, 0.5: 60}), wise(0.1, 1, {0.25: 60, 0.5: 70}),   # best pair: (0.1, 0.25) 75
               wise(0.01, 0, {0.25: 74, 0.5: 80}), wise(0.01, 1, {0.25: 74, 0.5: 72})]  # (0.01, 0.5) 76
    summary = tables.summarise(records)
    assert (summary.loc["WiSE-FT", "lr"], summary.loc["WiSE-FT", "alpha"]) == (0.01, 0.5)
    assert summary.loc["WiSE-FT", "val"] == pytest.approx(76.0) and summary.loc["WiSE-FT", "seeds"] == 2


FI = "experiments-fmow-imagenet"
FI_TINY = dict(epochs=1, ft_lrs=(0.01,), lpft_lrs=(0.001,), wise_alphas=(), l2sp_lrs=(), Cs=(0.1, 1.0), feature_n=20)


def test_imagenet_probes_by_sgd_per_seed_and_scores_r_and_a_over_their_classes(tmp_path, monkeypatch):
    data_root, checkpoint = experiments.write_quick_inputs(tmp_path / "inputs",
                                                           replace(experiments.smoke("imagenet"), **FI_TINY))
    sweep = experiments.sweep_for("imagenet", "smoke", data_root=data_root, checkpoint=checkpoint, device="cpu",
                                  folder=tmp_path / "records", cache=tmp_path / "cache", **FI_TINY)
    assert (sweep.lp, sweep.arch, sweep.cache) == ("sgd", "ViT-B-16", "")  # the quick profile decodes into RAM
    assert [sweeps.job_name(j) for j in sweeps.jobs(sweep)] == [
        "LP-seed0", "LP-seed1", "FT-lr0.01-seed0", "FT-lr0.01-seed1", "LP-FT-lr0.001-seed0", "LP-FT-lr0.001-seed1"]
    starts = lp_ft_starts(monkeypatch)
    records = {sweeps.job_name(r["config"]): r for r in sweeps.run_sweep(sweep)}
    lp = {s: sweeps.probe_of(records[f"LP-seed{s}"]) for s in (0, 1)}
    assert lp[0].C is None and len(lp[0].table) == sweep.lp_epochs and not np.array_equal(lp[0].W, lp[1].W)
    assert all(np.array_equal(starts[s], lp[s].W) for s in (0, 1))
    assert records["LP-seed0"]["config"]["lp"] == {"kind": "sgd", "epochs": 5, "lr": 0.1, "batch_size": 32}
    # ImageNet-R / -A: LP's accuracy is the argmax over the set's own classes, recomputed here from the features
    task, _ = sweeps.load_task(sweep)
    backbone, _ = sweeps.load_backbone(sweep)
    for name in ("ImageNet-R", "ImageNet-A"):
        data = task.ood[name]
        assert data.classes is not None and len(data.classes) < task.n_classes
        f = finetune.features(backbone, data, sweep.runtime())
        restricted = lp[0].accuracy(f, data.y, data.classes)
        assert records["LP-seed0"]["results"]["ood"][name] == pytest.approx(restricted)
        assert restricted >= lp[0].accuracy(f, data.y)  # never worse than the argmax over all classes
    compare = tables.compare_with_paper(tables.summarise(list(records.values())), "imagenet")
    assert set(compare["set"]) == {"ImageNet", "ImageNetV2", "ImageNet-R", "ImageNet-Sketch", "ImageNet-A"}
    order = tables.orderings(None, "imagenet").set_index("comparison")
    assert order.loc["LP > FT on OOD ImageNetV2", "paper"] == "no"  # the small shift: FT does not lose there
    assert order.loc["LP > FT on OOD ImageNet-R", "paper"] == "yes"


def test_fmow_and_imagenet_inputs_name_their_own_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LPFT_MOCOTP_CHECKPOINT", raising=False)
    _, ckpt = experiments.resolve_inputs(str(tmp_path), "", None, "fmow")
    assert ckpt.name == "mocotp_checkpoint_0200.pth.tar"
    monkeypatch.setenv("LPFT_MOCOTP_CHECKPOINT", str(tmp_path / "tp.pth.tar"))
    assert experiments.resolve_inputs(str(tmp_path), "", None, "fmow")[1] == tmp_path / "tp.pth.tar"
    assert experiments.resolve_inputs(str(tmp_path), "", "torchvision", "fmow")[1].name == "resnet50-0676ba61.pth"
    lines = experiments.missing_inputs(tmp_path, tmp_path / "tp.pth.tar", "fmow", "moco_v2")
    assert any("fmow_v1.1" in line for line in lines) and any("0x57abca4a55ec4f7e9908098beb2633c6" in line
                                                              for line in lines)
    lines = experiments.missing_inputs(tmp_path, tmp_path / "ViT-B-16.pt", "imagenet", "clip")
    assert any("imagenet-r" in line for line in lines) and any("ViT-B-16" in line for line in lines)
    assert "LPFT_MOCOTP_CHECKPOINT" in paperscale.full_command("fmow") and FI in paperscale.full_command("imagenet")
    assert "LPFT_CLIP_VIT_CHECKPOINT=/path/to/ViT-B-16.pt" in paperscale.full_command("imagenet")
    assert cli.main(["--experiment", "imagenet", "--data-root", str(tmp_path)]) == 1
    assert "imagenetv2-matched-frequency-format-val" in capsys.readouterr().err


def test_a_chapter_without_inputs_shows_the_papers_numbers_only():
    compare = tables.compare_all(["fmow", "imagenet"], {})
    assert set(compare["set"]) == {"FMoW", "ImageNet", "ImageNetV2", "ImageNet-R", "ImageNet-Sketch", "ImageNet-A"}
    assert "this run" not in compare.columns
    orders, n_agree, n_made = tables.orderings_all(["fmow", "imagenet"], {})
    assert (n_agree, n_made) == (0, 0) and set(orders["this run"]) == {"not run"}
    assert len(orders) == 3 + 9  # fmow: 2 OOD comparisons + ID; imagenet: 2 per OOD set + ID


def test_a_chapter_without_inputs_runs_nothing_and_says_what_is_missing(tmp_path, monkeypatch, capsys):
    for env in ("LPFT_MOCOTP_CHECKPOINT", "LPFT_CLIP_VIT_CHECKPOINT"):
        monkeypatch.delenv(env, raising=False)
    cfg = start_chapter(FI, profile="full", seed=0, device="cpu")
    chapter = paperscale.PaperScale(cfg, prefix="fi", data_root=str(tmp_path))
    assert chapter.ran == chapter.measured == [] and chapter.sweeps == {}
    text = chapter.describe()
    assert text.count("not run here") == 2 and "did not find them" in text
    assert "fmow_v1.1" in text and "mocotp_checkpoint_0200.pth.tar" in text
    chapter.run()
    chapter.checklist()
    assert capsys.readouterr().out == ("no inputs on this machine: nothing ran\n"
                                       "nothing ran here: no inputs on this machine\n")
    assert chapter.compare()["set"].tolist() == tables.compare_all(["fmow", "imagenet"], {})["set"].tolist()
    assert chapter.ratios() == {}
    how = chapter.how_to_run_text()  # the commands that run it, with the files named
    assert f"lpft-run {FI} --profile full --device cuda" in how and "LPFT_CLIP_VIT_CHECKPOINT=/path/to/ViT-B-16.pt" in how
    assert "--experiment imagenet --profile full" in how and "imagenetv2-matched-frequency-format-val" in how


def test_a_disk_cached_task_is_the_same_task_to_the_records(tmp_path):
    sweep = replace(tiny_sweep(tmp_path, "living17"), seeds=(0,))
    cached = replace(sweep, cache=str(tmp_path / "cache"))
    job = sweeps.lp_job(sweep, 0)
    assert sweeps.job_config(cached, job) == sweeps.job_config(sweep, job)  # the cache is where, not what
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # train, val source, val target
    task, _ = sweeps.load_task(cached)
    assert isinstance(task.train.x, torch.Tensor) and task.train.digest == sweeps.load_task(sweep)[0].train.digest


def test_command_line_runs_imagenet_from_its_own_checkpoint_variable(tmp_path, monkeypatch, capsys):
    data_root, checkpoint = experiments.write_quick_inputs(tmp_path / "inputs",
                                                           replace(experiments.smoke("imagenet"), **FI_TINY))
    monkeypatch.setenv(experiments.ENV_DATA_ROOT, str(data_root))
    monkeypatch.setenv("LPFT_CHECKPOINT", str(tmp_path / "not-this-one.pth.tar"))  # another experiment's variable
    monkeypatch.setenv("LPFT_CLIP_VIT_CHECKPOINT", str(checkpoint))
    assert cli.main(["--experiment", "imagenet", "--profile", "quick", "--device", "cpu", "--seeds", "1",
                     "--folder", str(tmp_path / "records"), "--set", "epochs=1", "--set", "ft_lrs=0.01",
                     "--set", "lpft_lrs=0.001", "--set", "wise_alphas=", "--set", "l2sp_lrs=", "--set", "Cs=0.1,1.0",
                     "--set", "feature_n=20"]) == 0
    out = capsys.readouterr().out
    assert "3 records" in out and "OOD ImageNet-A" in out  # LP-seed0, FT, LP-FT
    (record,) = [r for r in sweeps.run_sweep(experiments.sweep_for(
        "imagenet", "smoke", data_root=data_root, checkpoint=checkpoint, folder=tmp_path / "records", device="cpu",
        seeds=(0,), **FI_TINY)) if r["config"]["method"] == "LP"]
    assert record["config"]["common"]["backbone"]["arch"] == "ViT-B-16" and record["config"]["lp"]["kind"] == "sgd"


def test_the_command_line_lists_every_experiments_settings(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in experiments.EXPERIMENTS)
    table = experiments.experiments_table()
    assert table.loc["domainnet", "batch"] == "32 (2 × 16)" and table.loc["imagenet", "LP"] == "sgd"
    assert table.loc["fmow", "checkpoint"] == "$LPFT_MOCOTP_CHECKPOINT (mocotp_checkpoint_0200.pth.tar)"
    assert table.loc["imagenet", "FT lrs"] == "0.0001 0.0003 0.001" and table.loc["cifar-stl", "ID-val"] == "ID test"

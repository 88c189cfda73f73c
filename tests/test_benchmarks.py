"""The paper-scale throughput benchmark runs end to end on a CPU and projects a row's time from its measurements."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "largescale.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_largescale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projection_counts_lp_features_and_two_fine_tuning_runs():
    bench = load_script()
    m = {"train_images_per_s": 1000.0, "eval_images_per_s": 2000.0}
    lp = (50_000 + 10_000 + 10_000 + 9_200) / 2000  # CIFAR-10 test is ID-val too: passed over after every epoch
    run = 20 * (50_000 / 1000 + 10_000 / 2000) + (10_000 + 9_200) / 2000
    cifar = bench.projected_seconds(m)
    assert cifar["row"] == pytest.approx(lp + 2 * run)
    assert cifar["sweep"] == pytest.approx(3 * (lp + 12 * run))  # 6 FT and 6 LP-FT learning rates per seed
    # ImageNet: 10 epochs over 1,281,167 images, ImageNet val as ID-val, 3 FT and 3 LP-FT learning rates
    imagenet = bench.projected_seconds(m, bench.ROWS["imagenet"])
    evals = 50_000 + 10_000 + 30_000 + 50_889 + 7_500
    run = 10 * (1_281_167 / 1000 + 50_000 / 2000) + evals / 2000
    assert imagenet["run"] == pytest.approx(run) and imagenet["sweep"] == pytest.approx(3 * (imagenet["lp"] + 6 * run))


@pytest.mark.parametrize("row", ["cifar-stl", "imagenet"])
def test_benchmark_writes_its_measurements_with_provenance(tmp_path, row):
    out = tmp_path / "bench.json"
    shrink = ["--arch", "resnet18", "--width", "4"] if row == "cifar-stl" else ["--width", "32"]
    proc = subprocess.run([sys.executable, str(SCRIPT), "--row", row, "--device", "cpu", *shrink,
                           "--image-size", "32", "--steps", "1", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    expected = ({"CIFAR (resize 32 px)", "BREEDS (random-resized-crop from 256 px)"} if row == "cifar-stl" else
                {"ImageNet (stored at the input size)"})
    assert {r["data"] for r in result["rows"]} == expected and result["row"] == row
    assert result["batch_size"] == (64 if row == "cifar-stl" else 128)
    assert all(r["train_ratio_to_fp32"] == 1.0 and r["train_images_per_s"] > 0 for r in result["rows"])
    assert result["projected_sweep_hours"] * 60 > result["projected_row_minutes"] > 0
    assert result["git_revision"] and result["environment"]
    title = "CIFAR-10 -> STL-10" if row == "cifar-stl" else "ImageNet -> V2 / R / Sketch / A"
    assert f"projected {title} row" in proc.stdout and "the paper's sweep (3 seeds" in proc.stdout

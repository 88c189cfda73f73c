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
    lp = (45_000 + 5_000 + 10_000 + 9_200) / 2000
    run = 20 * (45_000 / 1000 + 5_000 / 2000) + (10_000 + 9_200) / 2000
    assert bench.projected_row_seconds(m) == pytest.approx(lp + 2 * run)


def test_benchmark_writes_its_measurements_with_provenance(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--arch", "resnet18", "--width", "4",
                           "--image-size", "32", "--steps", "1", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert {r["data"] for r in result["rows"]} == {"CIFAR (resize 32 px)", "BREEDS (random-resized-crop from 256 px)"}
    assert all(r["train_ratio_to_fp32"] == 1.0 and r["train_images_per_s"] > 0 for r in result["rows"])
    assert result["projected_cifar_stl_row_minutes"] > 0 and result["git_revision"] and result["environment"]
    assert "projected CIFAR-10 -> STL-10 row" in proc.stdout

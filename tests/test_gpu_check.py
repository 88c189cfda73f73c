"""benchmarks/gpu_check.py without a GPU: it says so and runs nothing; with --allow-cpu every check runs on the CPU at
tiny sizes and passes, and the results are written with their provenance (this tests the script, not a GPU); a check
that fails, raises or overruns its budget fails the run without stopping the others."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
CHECKS = ["int_mm", "digit_net", "ft_step", "sweep", "resume", "projection"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = run("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device is visible" in proc.stdout and "these checks need a GPU; nothing was run" in proc.stdout
    assert "PASS" not in proc.stdout and "FAIL" not in proc.stdout
    assert not out.exists()  # an earlier GPU run's results are not overwritten


def test_allow_cpu_runs_every_check_and_writes_the_results(tmp_path):
    out = tmp_path / "archive" / "gpu-check.json"
    proc = run("--allow-cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for number, name in enumerate(CHECKS, 1):
        assert f"[{number}] {name}:" in proc.stdout and f"\nPASS {name}:" in proc.stdout
    assert "PASS: 6 passed, 0 failed" in proc.stdout
    result = json.loads(out.read_text())
    assert {"passed", "date", "device", "device_name", "torch", "cuda", "cudnn", "git_revision", "sizes",
            "total_seconds", "checks", "environment"} <= set(result)
    assert result["passed"] and result["device"] == "cpu" and result["sizes"] == "small" and result["git_revision"]
    checks = {c["name"]: c for c in result["checks"]}
    assert list(checks) == CHECKS
    assert all(c["status"] == "PASS" and c["error"] is None and 0 <= c["seconds"] <= c["budget_s"]
               for c in checks.values())
    int_mm = checks["int_mm"]["details"]
    assert int_mm["cases"] == 80 and int_mm["output_mismatches"] == int_mm["accumulator_mismatches"] == []
    assert all(n > 0 for n in int_mm["coverage"].values())  # uint8, int8, padded, aligned, both signs, every shift
    assert all(d["identical"] for d in checks["digit_net"]["details"].values())
    assert checks["ft_step"]["details"]["logits bf16"] and checks["ft_step"]["details"]["images_per_s"] > 0
    assert checks["sweep"]["details"]["records"] == checks["sweep"]["details"]["jobs"] == 4  # LP, FT, LP-FT, L2-SP
    assert checks["resume"]["details"]["resumed at epoch 2"]
    assert checks["projection"]["details"]["projected_row_minutes"] > 0


def test_a_failing_raising_or_overrunning_check_fails_the_run(monkeypatch, capsys):
    gpu_check = load_script()
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check.SMALL, "budgets", {**gpu_check.SMALL.budgets, "ft_step": 1})
    monkeypatch.setattr(gpu_check, "check_int_mm", lambda device, sizes: (False, "2 mismatches", {}))

    def raising(device, sizes):
        raise RuntimeError("no kernel image is available")

    def slow(device, sizes):
        time.sleep(30)
        return True, "too late", {}

    monkeypatch.setattr(gpu_check, "check_digit_net", raising)
    monkeypatch.setattr(gpu_check, "check_ft_step", slow)
    start = time.perf_counter()
    assert gpu_check.main(["--allow-cpu", "--only", "int_mm,digit_net,ft_step"]) == 1
    assert time.perf_counter() - start < 10
    printed = capsys.readouterr().out
    assert "FAIL int_mm: 2 mismatches" in printed
    assert "FAIL digit_net: RuntimeError: no kernel image is available" in printed
    assert "FAIL ft_step: TimeoutError: stopped after its budget of 1 s" in printed
    assert "FAIL: 0 passed, 3 failed" in printed

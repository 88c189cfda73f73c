"""Result records: atomic, resumable (a finished run is never repeated), read back with their provenance."""
import json

import pytest

from lpft import records


def test_run_once_computes_then_reads_back(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"id_acc": 0.9, "ood_acc": 0.5}

    config = {"method": "LP", "seed": 3, "hp": {"C": 0.1}}
    first = records.run_once(tmp_path, config, compute, name="LP")
    second = records.run_once(tmp_path, config, compute, name="LP")
    assert calls == [1] and first["results"] == second["results"] == {"id_acc": 0.9, "ood_acc": 0.5}
    assert {"torch", "python", "numpy"} <= set(first["environment"]) and first["git_revision"]
    records.run_once(tmp_path, {**config, "seed": 4}, compute, name="LP")
    assert calls == [1, 1]  # another seed is another run
    table = records.load_records(tmp_path)
    assert sorted(table["seed"]) == [3, 4] and set(table["hp.C"]) == {0.1}


def test_a_computed_record_is_returned_as_it_is_read_back(tmp_path):
    """Key order, tuples and the like: a page that prints a record must print the same whether it computed the record
    or read it back (the digit chapter once printed its chosen hyperparameters in two key orders)."""
    compute = lambda: {"hp": {"lr": 0.1, "epochs": 3, "C": 1.0}, "grid": (1, 2)}  # noqa: E731
    config = {"seed": 0, "b": 1, "a": (2, 3)}
    computed = records.run_once(tmp_path, config, compute, name="x")
    read = records.run_once(tmp_path, config, compute, name="x")
    assert json.dumps(computed) == json.dumps(read)  # the same keys in the same order, the same types
    assert list(computed["results"]["hp"]) == ["C", "epochs", "lr"] and computed["results"]["grid"] == [1, 2]


def test_interrupted_run_leaves_nothing_and_is_redone(tmp_path):
    config = {"method": "FT", "seed": 0}

    def crash():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        records.run_once(tmp_path, config, crash, name="FT")
    assert list(tmp_path.iterdir()) == []  # no half-written record
    record = records.run_once(tmp_path, config, lambda: {"acc": 1.0}, name="FT")
    assert record["results"] == {"acc": 1.0}


def test_write_record_is_atomic(tmp_path):
    path = tmp_path / "r.json"
    records.write_record(path, {"a": 1})
    records.write_record(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_record_key_is_order_independent():
    assert records.record_key({"a": 1, "b": [1, 2]}) == records.record_key({"b": [1, 2], "a": 1})
    assert records.record_key({"a": 1}) != records.record_key({"a": 2})


def test_a_record_of_other_code_is_not_reused(tmp_path, monkeypatch):
    config = {"method": "LP", "seed": 0}
    records.run_once(tmp_path, config, lambda: {"acc": 1.0}, name="LP")
    monkeypatch.setattr(records, "code_fingerprint", lambda: "changed-library")
    record = records.run_once(tmp_path, config, lambda: {"acc": 0.5}, name="LP")
    assert record["results"] == {"acc": 0.5} and record["code_fingerprint"] == "changed-library"


def test_fingerprint_ignores_documentation_but_not_code():
    src = b'"""Module doc."""\nimport math\n\n\ndef f(x):\n    """Doc."""\n    return math.sqrt(x)  # a comment\n'
    reworded = b'"""Other words."""\nimport math\n\n\ndef f(x):\n    """More doc."""\n    # new comment\n    return math.sqrt(x)\n'
    changed = b'"""Module doc."""\nimport math\n\n\ndef f(x):\n    """Doc."""\n    return math.sqrt(x + 0)\n'
    assert records._code_only(src) == records._code_only(reworded)
    assert records._code_only(src) != records._code_only(changed)

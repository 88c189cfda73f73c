"""Integer-only EfficientNet-Lite0 (lpft.fixedpoint.mobile) on the digit task: float vs integer accuracy, ID and OOD,
agreement, eager vs torch.compile, and which layer's quantisation costs most (each layer alone switched back to
float in the float64 simulation). One process, one thread:

    PYTHONPATH=lib nice -n 10 python benchmarks/fixedpoint_lite0.py [--ft-epochs 3] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from lpft import digits, efficientnet, finetune
from lpft.fixedpoint import mobile

RESOLUTION, LP_C, SEED, N_CALIBRATION = 48, 1.0, 0, 256


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())


def evaluate(model, net, sets: dict, compile_check: bool) -> dict:
    out = {}
    compiled = torch.compile(net.integer_logits, fullgraph=True, dynamic=False) if compile_check else None
    for name, (x, y) in sets.items():
        with torch.no_grad():
            lf = model.eval()(x)
        q = net.quantize_input(x)
        t = time.perf_counter()
        li = net.integer_logits(q)
        t_eager = time.perf_counter() - t
        row = {"n": len(y), "float": accuracy(lf, y), "integer": accuracy(li, y),
               "agreement": float((lf.argmax(1) == li.argmax(1)).double().mean()),
               "simulate_equal": bool(torch.equal(net.simulate(x), li.double() * 2.0 ** -(net.fl_features
                                                                                            + net.fl_classifier))),
               "eager_s": t_eager}
        if compiled is not None:
            lc = compiled(q)
            t = time.perf_counter()
            lc = compiled(q)
            row["compiled_s"] = time.perf_counter() - t
            row["compiled_equal"] = bool(torch.equal(lc, li))
        out[name] = row
    return out


def attribution(net, sets: dict) -> list[dict]:
    """Accuracy of the simulation with each single layer in float (others integer), on every set."""
    rows = []
    base = {name: accuracy(net.simulate(x), y) for name, (x, y) in sets.items()}
    for layer in [*net.exact]:
        rows.append({"layer": layer, **{name: accuracy(net.simulate(x, {layer}), y) - base[name]
                                        for name, (x, y) in sets.items()}})
    rows.append({"layer": "ALL", **{name: accuracy(net.simulate(x, set(net.exact)), y) - base[name]
                                    for name, (x, y) in sets.items()}})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ft-epochs", type=int, default=0)
    ap.add_argument("--out", default="fixedpoint_lite0.json")
    ap.add_argument("--no-attribution", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = digits.make_task(id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, seed=SEED)
    plain = digits.make_task(id_domain="mnist", ood_domain="uci", shift="none", strength=1.0, seed=SEED)
    sets = {"ID": tuple(task.test_id.tensors), "OOD inverted": tuple(task.ood["uci"].tensors),
            "OOD plain": tuple(plain.ood["uci"].tensors)}
    calibration = task.train.tensors[0][torch.randperm(len(task.train), generator=torch.Generator().manual_seed(SEED))
                                        [:N_CALIBRATION]]
    pre = efficientnet.digit_model(RESOLUTION)
    models = {"LP": finetune.linear_probe(pre, task, LP_C)}
    if args.ft_epochs:
        models["FT"] = finetune.fine_tune(pre, task, lr=1e-2, epochs=args.ft_epochs, seed=SEED)[0].eval()
    results = {"resolution": RESOLUTION, "lp_C": LP_C, "seed": SEED, "n_calibration": N_CALIBRATION,
               "ft_epochs": args.ft_epochs, "models": {}}
    for method, model in models.items():
        for rule in ("std", "search"):
            t = time.perf_counter()
            net = mobile.FixedPointLite0(model, calibration, activation_rule=rule)
            entry = {"build_s": time.perf_counter() - t, "fls": net.fls(), "fl_features": net.fl_features,
                     "fl_classifier": net.fl_classifier,
                     "eval": evaluate(model, net, sets, compile_check=(rule == "std" and method == "LP"))}
            if not args.no_attribution and rule == "std":
                entry["attribution"] = attribution(net, sets)
            results["models"][f"{method}/{rule}"] = entry
            print(method, rule, json.dumps(entry["eval"], indent=1), flush=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

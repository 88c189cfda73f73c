# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# (ch-fixed-point)=
# # Fixed point: do LP, FT and LP-FT keep their ranking in 8 bits?
#
# **Question.** Fine-tuning distorts pretrained features ({numref}`ch-digits`); deploying a network in 8-bit integers
# perturbs them again. When the digit chapter's LP, FT and LP-FT models (and the later methods) run integer-only, in
# the 8-bit fixed-point format of F8Net {cite:p}`jin2022f8net`, do they keep their ID and OOD accuracy, and does the
# ranking of the paper {cite:p}`kumar2022finetuning` (LP above FT out of distribution, FT above LP in distribution)
# survive? Neither paper asks this.
#
# The chapter builds the pieces in order: the number format and how its one free parameter is chosen; an integer
# kernel for `torch.compile`, checked bit for bit against a plain reference; the experiment; and, measured, every
# place where the integer network still differs from F8Net's method.

# %% tags=["parameters"]
profile = "quick"  # "quick" (CI, CPU, 3 seeds) or "full" (10 seeds, the digit chapter's full grids)
seed = 0  # first downstream seed: the chapter runs seeds seed, seed + 1, ...
device = "auto"  # "auto" | "cpu" | "cuda" (the experiment runs on the CPU: 8x8 images)

# %%
import json

from IPython.display import display
from lpft.book import glue, paths, plotting, profiles, start_chapter
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from lpft.fixedpoint import deploy, kernel, network, qformat
from lpft import prose, protocol
from lpft.records import archive, load_archive

cfg = start_chapter("fixed-point", profile=profile, seed=seed, device=device)
print(cfg)

# %% [markdown]
# ## The format: 8 bits and a fractional length
#
# What F8Net claims, in the words of its official repository's README (github.com/snap-research/F8Net, "Overview";
# the paper's own text could not be retrieved for this book, so the method below follows the official code):
#
# > In contrast, fixed-point models can avoid such high-demanding requirements but demonstrates inferior performance
# > to the other two methods. In this work, we study the problem of how to train such models. Specifically, we conduct
# > statistical analysis on values for quantization and propose to determine the fixed-point format from data during
# > training with some semi-empirical formula. Our method demonstrates that high-precision multiplication is not
# > necessary for the quantized model to achieve comparable performance as their full-precision counterparts.
#
# A fixed-point number with fractional length FL is $x = q\cdot 2^{-\mathrm{FL}}$ with $q$ an 8-bit integer: signed,
# $q\in[-127, 127]$, or unsigned after a ReLU, $q\in[0, 255]$. Each tensor (a layer's weights, a layer's input) has
# one FL. Rounding is half to even and out-of-range values saturate. A small FL gives a coarse grid (rounding error);
# a large one a small range (clipping error). F8Net's rule picks FL from the tensor's standard deviation,
#
# $$\mathrm{FL} = \operatorname{clamp}\big(\lfloor \log_2(c/\sigma) \rfloor,\ 0,\ 8 - \mathrm{signed}\big),
#   \qquad c = 40 \text{ (signed)},\ 70 \text{ (unsigned; } \sigma \text{ of the pre-ReLU tensor)}.$$
#
# Below, Gaussian samples over a range of $\sigma$: each FL's relative RMS error, the rule's choice and the
# brute-force optimum.

# %%
sigmas = np.geomspace(1e-3, 1e3, cfg.n_sigmas)
sweeps = {kind: qformat.fl_rule_sweep(sigmas, cfg.n_samples, signed=(kind == "signed"), seed=cfg.seed)
          for kind in ("signed", "unsigned")}
agreement, lines = {}, []
for kind, df in sweeps.items():
    per_sigma = df.drop_duplicates("sigma")
    agreement[kind] = 100 * (per_sigma["rule_FL"] == per_sigma["best_FL"]).mean()
    chosen = df[df["FL"] == df["rule_FL"]].set_index("sigma")["relative_rmse"]
    best = df[df["FL"] == df["best_FL"]].set_index("sigma")["relative_rmse"]
    glue.number(f"fxp_rule_agree_{kind}", agreement[kind], digits=3)
    glue.number(f"fxp_rule_excess_{kind}", 100 * (chosen / best - 1).max(), digits=2, floor=0)  # 0: "0"
    lines.append(f"{kind}: the σ rule picks the brute-force optimal FL for {agreement[kind]:.1f}% of the σ grid; "
                 f"worst excess error over the optimum {100 * (chosen / best - 1).max():.1f}%")
print("\n".join(lines))

# %%
fig, axes = plotting.figure(ncols=2, width=8.0, height=3.4, sharey=True)
for ax, (kind, df) in zip(axes, sweeps.items()):
    sns.lineplot(df, x="sigma", y="relative_rmse", hue="FL", palette="viridis", ax=ax, legend=kind == "unsigned",
                 linewidth=0.9)
    rule = df[df["FL"] == df["rule_FL"]]
    ax.plot(rule["sigma"], rule["relative_rmse"], color="black", linewidth=2.2, linestyle="--", label="σ rule")
    ax.set(xscale="log", yscale="log", xlabel="σ of the tensor (log scale)", title=f"{kind} 8-bit",
           ylabel="relative RMS error (log scale)", ylim=(1e-3, 2))
axes[1].legend(title="FL", fontsize="small", ncols=2)
plotting.finish(fig, "fig_fxp_rule")

# %% [markdown]
# ```{glue:figure} fig_fxp_rule
# :name: fig-fxp-rule
#
# Relative RMS quantisation error of Gaussian data (left) and ReLU'd Gaussian data (right) against its standard
# deviation σ, one curve per fractional length; the dashed black curve is the FL chosen by the σ rule. Each FL is
# best on an octave of σ; the rule follows the lower envelope.
# ```
#
# The rule picks the optimal FL on {glue:text}`fxp_rule_agree_signed`% of the grid for signed tensors and
# {glue:text}`fxp_rule_agree_unsigned`% for unsigned ones; where it misses, its error is at most
# {glue:text}`fxp_rule_excess_signed`% (signed) and {glue:text}`fxp_rule_excess_unsigned`% (unsigned) above the
# optimum.
#
# ## The kernel
#
# A fixed-point linear layer multiplies 8-bit integers, sums exactly in int32 at $\mathrm{FL}_x + \mathrm{FL}_w$
# (on a CPU PyTorch's int32 matrix product; `torch._int_mm`, PyTorch's int8 GEMM, returns wrong sums on some CPUs
# under this book's pinned kernels, see below), adds an int32 bias at that FL and moves the sum to the next layer's FL by a shift of
# $n = \mathrm{FL}_x + \mathrm{FL}_w - \mathrm{FL}_y$ bits, rounding half to even, then saturates:
#
# $$y = \operatorname{clamp}\Big(\operatorname{round}_{\text{half even}}\big((q_x q_w^\top + b) / 2^{n}\big)\Big).$$
#
# `lpft.fixedpoint.kernel.fixed_point_linear` computes exactly this; with unsigned output the clamp to $[0, 255]$ is
# the ReLU.
# The shift is a Python `int`, so under `torch.compile` it is a constant of the graph. It refuses shapes whose int32
# sum could overflow. Here it is, eager and compiled, against an int64 / float64 reference on random cases (ties and
# saturation included by construction: biases up to $2^{24}$ and shifts from left shifts to 31 bits):

# %%
rng = np.random.default_rng(cfg.seed)
# One graph per (shift, output signedness, input dtype): 20 here, above dynamo's default limit of 8 recompiles.
torch._dynamo.config.recompile_limit = 64
compiled_linear = torch.compile(kernel.fixed_point_linear, fullgraph=True, dynamic=True)
compiled_shifts = (-3, 0, 1, 6, 13)
mismatches = {"eager": 0, "compiled": 0}
for i in range(cfg.n_kernel_cases):
    m, k, n = (int(v) for v in rng.integers(2, 300, 3))
    unsigned, out_signed = bool(rng.integers(2)), bool(rng.integers(2))
    x_q = torch.tensor(rng.integers(0, 256, (m, k)) if unsigned else rng.integers(-127, 128, (m, k)),
                       dtype=torch.uint8 if unsigned else torch.int8)
    w_q = torch.tensor(rng.integers(-127, 128, (n, k)), dtype=torch.int8)
    b_q = torch.tensor(rng.integers(-2**24, 2**24, n), dtype=torch.int32)
    shift = compiled_shifts[i % len(compiled_shifts)]
    expected = kernel.reference_linear(x_q, w_q, b_q, shift, out_signed=out_signed)
    eager = kernel.fixed_point_linear(x_q, w_q, b_q, shift, out_signed=out_signed)
    mismatches["eager"] += not torch.equal(eager, expected)
    mismatches["compiled"] += not torch.equal(compiled_linear(x_q, w_q, b_q, shift, out_signed=out_signed), expected)
glue.number("fxp_kernel_cases", cfg.n_kernel_cases)
glue.text("fxp_kernel_mismatch", prose.count(sum(mismatches.values()), zero="no"))
print(f"{cfg.n_kernel_cases} random cases: mismatches with the reference {mismatches}")

# %% [markdown]
# Why not `torch._int_mm`, PyTorch's int8 GEMM? On a CPU with AVX512-VNNI it calls oneDNN, and under this book's
# pinned numeric environment (oneDNN capped at AVX2) oneDNN's AVX2 kernel adds pairs of 8-bit products in saturating
# 16-bit integers: on an AMD EPYC with AVX-512 VNNI the random cases above then disagreed with the reference in most
# outputs. The int32 product widens the operands first and is exact on every CPU, at a cost in speed (the benchmark
# below).
#
# Under `torch.compile` the integer GEMM stays an extern call (with the bias added in it); one generated C++ loop
# widens the 8-bit operands before it, and everything after it (the rounding shift, saturation, the cast to 8 bits)
# becomes **one** generated C++ loop. The generated code, with the epilogue's body:

# %%
from torch._inductor.utils import run_and_get_code

torch._dynamo.reset()
x_q = torch.randint(0, 256, (64, 96), dtype=torch.uint8)
w_q = torch.randint(-127, 128, (32, 96), dtype=torch.int8)
b_q = torch.randint(-2**20, 2**20, (32,), dtype=torch.int32)
_, (code,) = run_and_get_code(torch.compile(lambda x, w, b: kernel.fixed_point_linear(x, w, b, 6, out_signed=False),
                                            fullgraph=True), x_q, w_q, b_q)
calls = [line.strip() for line in code[code.index("def call("):].splitlines()
         if line.strip().startswith(("cpp_fused", "extern_kernels."))]
(gemm,) = [i for i, line in enumerate(calls) if line.startswith("extern_kernels.")]
glue.number("fxp_fused_loops", len(calls) - gemm - 1)
print("the compiled function's calls, in order:\n  " + "\n  ".join(calls))
epilogue = code[code.index(calls[-1].split("(")[0] + " = "):]  # the source of the last generated loop
print("the epilogue's body:")
print("\n".join(line.strip() for line in epilogue.splitlines() if "auto tmp" in line or ".store(" in line))

# %% [markdown]
# The speed of the kernel is measured by the benchmark script, not here (a timing in an executed chapter would differ
# from run to run). `benchmarks/fixedpoint.py` times, interleaved in one process on one thread, fp32 `nn.Linear`, the
# fixed-point layer eager and compiled, and the integer GEMM alone; its last run on a 2-core CPU is committed and read
# back here:

# %%
bench = json.loads((paths.ARCHIVE / "benchmarks" / "fixedpoint-cpu.json").read_text())
bench_df = pd.DataFrame(bench["rows"])
print(f"measured {bench['date']} at git {bench['git_revision']}, torch {bench['environment']['torch']}, "
      f"{bench['threads']} thread, {bench['cpu_count']} CPUs; integer GEMM: {bench['int_mm_path']}")
speed = bench_df.pivot_table(index=["M", "K", "N"], columns="variant", values="median_ms", sort=False)
speed = speed[["fp32 nn.Linear", "fixed point, eager", "fixed point, compiled", "integer GEMM alone"]]
first = speed.iloc[0]


def times_vs(t: float, base: float, what: str) -> str:
    """"2.1× faster than X", "2.1× slower than X" or "about as fast as X" for a time t against a time base."""
    factor = prose.ratio(max(t, base) / min(t, base), same="")
    return f"about as fast as {what}" if not factor else f"{factor} {'faster' if t < base else 'slower'} than {what}"


glue.text("fxp_speed_vs_fp32", times_vs(first["fixed point, compiled"], first["fp32 nn.Linear"], "fp32 nn.Linear"))
glue.text("fxp_speed_vs_eager", times_vs(first["fixed point, compiled"], first["fixed point, eager"],
                                         "the same code run eagerly"))
glue.number("fxp_speed_vs_intmm", first["fixed point, compiled"] / first["integer GEMM alone"], digits=2)
speed.round(3).rename(columns=lambda c: f"{c} (median ms)")

# %% [markdown]
# At batch 512, 512 → 512 the compiled layer is {glue:text}`fxp_speed_vs_fp32` and {glue:text}`fxp_speed_vs_eager`,
# and takes {glue:text}`fxp_speed_vs_intmm`× the time of the bare integer GEMM. An exact int32 product on a CPU is
# not faster than fp32: the speed of 8-bit inference comes from int8 kernels (VNNI, or the integer units of other
# hardware), which this book would have to show exact first.
#
# ## The integer-only digit network
#
# `lpft.fixedpoint.network.FixedPointDigitNet` converts a trained digit network. Its fractional lengths are fixed
# once, by a static calibration on the first {glue:text}`fxp_n_calibration` ID training images. Every tensor between
# layers is 8-bit:
#
# - the input image enters as F8Net's conventional configurations feed it, unsigned pixel codes
#   $\operatorname{round}(255x)$ read at FL 8 (the digit images lie in $[0, 1]$). A code $q$ then stands for
#   $q/256 = 255x/256$. F8Net trains its networks on this input; the digit networks were trained in float on $x$,
#   so the factor $256/255$ is folded into the first convolution's weights, as F8Net folds the leftover factor of its
#   average pool (below) into a convolution's weights;
# - each convolution is the kernel above applied to image patches; weights are int8 with FL from the σ rule, biases
#   int32 at $\mathrm{FL}_x + \mathrm{FL}_w$;
# - GroupNorm has no counterpart in F8Net, which folds BatchNorm's running statistics into the weights. GroupNorm
#   normalises each image by its own statistics, so it cannot be folded and is computed in integers: the
#   convolution's int32 output is first requantised to int8, then, with $n$ values per group, $S_1=\sum q$ and
#   $S_2=\sum q^2$, the normalised value is exactly $(nq - S_1)/\sqrt{nS_2 - S_1^2 + n^2\epsilon 4^{\mathrm{FL}}}$.
#   This takes what F8Net's integer layers never need: int64 products, an integer square root per (image, group)
#   and a rounding integer division per element. $\gamma$ is 8-bit and $\beta$ 32-bit;
# - ReLU is the unsigned clamp; max pooling is exact on integers;
# - the global average over the last $2\times2$ positions follows F8Net's average pool (`FXQAvgPool2d` in
#   `models/fix_quant_ops.py` of its official code): the last layer's output is not requantised to 8 bits first. Its
#   exact values (the int32 accumulators of a norm-free network; here the exact fractions of the last GroupNorm) pass
#   the ReLU, are summed, which raises the FL by $\log_2 4 = 2$ without rounding, and are rounded once, to the
#   classifier's input FL (σ rule on the pooled features). F8Net's $7\times7$ window leaves a factor $64/49$, folded
#   into the last convolution's weights; a $2\times2$ window leaves none;
# - the head returns int32 logits, whose argmax is the prediction.
#
# The models are the digit chapter's: its label-free backbone, the same seeds and grids, and for each method the run
# that chapter reports (hyperparameters chosen on ID validation); they are read back from the cache the digit chapter
# fills (`cache/digit-models`), or trained the same way when it is empty. Each of them is then deployed, and float and
# fixed point are compared on the ID test set, the OOD test set (inverted UCI) and the natural shift alone (plain
# UCI).

# %%
setup = protocol.primary_conditions(profiles.settings("experiments-digits", cfg.profile))
folder = paths.results("fixed-point", cfg.profile)
seeds = list(range(cfg.seed, cfg.seed + cfg.n_seeds))
records = deploy.deploy_all(setup, seeds, folder, experiment_folder=paths.results("experiments-digits", cfg.profile),
                            cache=paths.PRETRAINED, models=paths.DIGIT_MODELS, n_calibration=cfg.n_calibration,
                            jobs=cfg.jobs)
glue.number("fxp_n_calibration", cfg.n_calibration)
if cfg.profile == "full":  # a full run refreshes the committed archive that quick-profile pages show
    archive(records, paths.ARCHIVE / "fixed-point-full", deploy.archive_name)
print(f"{len(records)} records in {paths.relative(folder)}; code fingerprint "
      f"{records[0]['code_fingerprint']}; fractional lengths of seed {seeds[0]}'s FT model: "
      f"{json.dumps(records[0]['results']['FT']['fls'], sort_keys=True)}")  # the same key order read back or computed

# %%
summary, checks, found = deploy.deployment_summary(records)
order = list(summary.index.get_level_values("method").unique())
summary

# %% [markdown]
# Accuracies in %, means over seeds with the 90% interval half-widths (±); "drop" is float minus fixed point; "agree"
# is the % of test images whose prediction is unchanged; "feature change" is the mean squared change of the
# penultimate features caused by quantisation and "tuning change" the one caused by training from the pretrained
# backbone (×100, the digit chapter's metric; zero for LP, whose backbone is frozen).

# %%
wide = deploy.deployment_table(records).pivot_table(index=["seed", "method"], columns="split",
                                                   values=["float", "fixed"]).reset_index()
fig, axes = plotting.figure(ncols=2, width=8.0, height=3.6)
palette = {m: plotting.METHOD_COLORS.get(m, c) for m, c in zip(order, sns.color_palette("colorblind", len(order)))}
for ax, kind in zip(axes, ("float", "fixed")):
    sns.scatterplot(wide, x=(kind, "id"), y=(kind, "ood"), hue="method", hue_order=order, palette=palette, ax=ax,
                    legend=kind == "fixed", s=40)
    ax.set(xlabel="ID test accuracy (%)", ylabel="OOD test accuracy (%), inverted UCI",
           title="float32" if kind == "float" else "8-bit fixed point, integer-only")
lims = [(min(wide[(k, s)].min() for k in ("float", "fixed")) - 1, 100) for s in ("id", "ood")]
for ax in axes:
    ax.set(xlim=lims[0], ylim=lims[1])
axes[1].legend(fontsize="small", loc="lower left")
plotting.finish(fig, "fig_fxp_scatter")

# %% [markdown]
# ```{glue:figure} fig_fxp_scatter
# :name: fig-fxp-scatter
#
# ID vs OOD test accuracy of every method and seed, float32 (left) and the same models deployed in 8-bit fixed point,
# integer-only (right). One point per (method, seed).
# ```

# %%
for name, value in {"fxp_n": found["n"], "fxp_lpwin_float": found["lp_ood"]["float"],
                    "fxp_lpwin_fixed": found["lp_ood"]["fixed"], "fxp_ftwin_float": found["ft_id"]["float"],
                    "fxp_ftwin_fixed": found["ft_id"]["fixed"], "fxp_same_rank_id": found["same_rank"]["id"],
                    "fxp_same_rank_ood": found["same_rank"]["ood"]}.items():
    glue.number(name, value, floor=0)  # counts: 0 prints as "0"
glue.number("fxp_max_drop", found["max_drop"], digits=2)
glue.number("fxp_change_id", found["change"]["id"], digits=2)
glue.number("fxp_change_ood", found["change"]["ood"], digits=2)
glue.number("fxp_ft_change_id", found["ft_tuning_change"], digits=3)
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    for split in ("id", "ood"):
        glue.number(f"fxp_{key}_{split}_float", summary.loc[(m, split), "float"], digits=3)
        glue.number(f"fxp_{key}_{split}_fixed", summary.loc[(m, split), "fixed"], digits=3)
checks

# %% [markdown]
# ## What differs from F8Net, and what it is worth
#
# The number format, the σ rule and the linear kernel are F8Net's. The network around them differs from F8Net's
# method, as its official code runs it, in the places listed below. Two differences this chapter had before were
# removed: the pooled features were requantised to 8 bits per position and rounded again after the sum, and the image
# got its FL from the σ rule. Each deployed model above was also run with one change at a time (the same model and
# calibration images), so each effect below is measured: accuracies are means over methods and seeds, in points of
# the F8Net-faithful network's accuracy.

# %%
means = deploy.deviation_means(records)


def points(x: float) -> str:
    return f"{round(x, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def effect(variant: str) -> str:
    return (f"{points(deploy.variant_change(means, variant, 'id'))} ID, "
            f"{points(deploy.variant_change(means, variant, 'ood'))} OOD")


# what GroupNorm adds per image, against the convolutions' multiply-accumulates
costs = network.integer_costs(protocol.pretrained_model(setup, paths.PRETRAINED))
gn_divisions, gn_roots, macs = costs["divisions"], costs["roots"], costs["macs"]
image_fl_sigma = qformat.choose_fl(protocol.make_task(setup, seeds[0]).train.tensors[0][:cfg.n_calibration],
                                   signed=False)

pool_differ = {s: means.loc[s, "pooled codes differ"] for s in ("id", "ood")}
drop = {s: means.loc[s, "float"] - means.loc[s, "fixed"] for s in ("id", "ood")}
rows = [
    ("average pooling", "removed", "int32 sum, FL raised by log2 of the window, one rounding to the classifier's "
     "input FL", "as F8Net (before: the last layer's outputs requantised to 8 bits, the mean rounded again)",
     f"{pool_differ['id']:.1f}% (ID), {pool_differ['ood']:.1f}% (OOD) of pooled codes differ; "
     f"accuracy with the double rounding: {effect('pool: 8-bit codes rounded again')}"),
    ("input image", "removed", "pixel codes round(255x), unsigned, FL 8",
     f"as F8Net, 256/255 folded into the first convolution (before: FL {image_fl_sigma} from the σ rule)",
     f"accuracy with the σ rule's FL: {effect('image: σ-rule FL')}"),
    ("normalisation", "kept", "BatchNorm folded into the weights: multiply-accumulate, shift and clamp only",
     "GroupNorm (the digit networks were trained with it; per-image statistics cannot be folded) in integers: an "
     "int8 requantisation before it, int64 products, integer square roots and divisions",
     f"per image {gn_divisions:,} integer divisions and {gn_roots} square roots beside {macs:,} "
     "multiply-accumulates; its rounding is part of the float → fixed change below"),
    ("activation clip", "kept", "PACT: a learned clip α per layer, the codes round(255y/α) whatever the FL; without "
     "PACT (tiny fine-tuning configurations) the FL is grid-searched", "no PACT: the σ rule's FL sets the clip "
     "255·2^-FL (no published F8Net configuration combines the two)",
     f"accuracy with grid-searched activation FLs: {effect('activation FLs: grid search')}"),
    ("calibration", "kept", "the FL of each activation is a running average (momentum 0.1) of per-batch FLs during "
     "training", f"one static calibration on {cfg.n_calibration} ID training images",
     f"{means['batch FLs differ'].mean():.1f}% of activation FLs differ when a single batch of "
     f"{deploy.BATCH} calibration images sets them"),
    ("training", "kept", "quantisation-aware training (straight-through estimator), or a short fine-tuning",
     "none: the float models are converted after training",
     f"float → fixed point: {points(-drop['id'])} ID, {points(-drop['ood'])} OOD"),
]
for split in ("id", "ood"):
    glue.number(f"fxp_pool_differ_{split}", f"{pool_differ[split]:.1f}")
    for key, variant in {"pool": "pool: 8-bit codes rounded again", "image": "image: σ-rule FL",
                         "search": "activation FLs: grid search"}.items():
        glue.number(f"fxp_{key}_change_{split}", points(deploy.variant_change(means, variant, split)))
glue.number("fxp_image_fl_sigma", image_fl_sigma)
glue.number("fxp_batch", deploy.BATCH)
glue.number("fxp_batch_fl_differ", f"{means['batch FLs differ'].mean():.1f}")
glue.number("fxp_gn_divisions", f"{gn_divisions:,}")
glue.number("fxp_gn_roots", gn_roots)
glue.number("fxp_macs", f"{macs:,}")
deviations = pd.DataFrame(rows, columns=["difference", "status", "F8Net", "this chapter", "measured effect"])
with pd.option_context("display.max_colwidth", None):
    display(deviations.set_index("difference"))

# %% [markdown]
# Removing the double rounding of the pooled features changes {glue:text}`fxp_pool_differ_id`% of the pooled codes on
# ID test images ({glue:text}`fxp_pool_differ_ood`% on OOD); with it put back, accuracy moves by
# {glue:text}`fxp_pool_change_id` points ID and {glue:text}`fxp_pool_change_ood` OOD. Feeding the image at the σ
# rule's FL {glue:text}`fxp_image_fl_sigma` instead of F8Net's FL 8 moves it by {glue:text}`fxp_image_change_id` and
# {glue:text}`fxp_image_change_ood`. Of the differences kept, the clip is the one F8Net settles in two ways: PACT
# learns each layer's clip during training, and its configurations without PACT grid-search the FL instead of taking
# the σ rule's. Grid-searched activation FLs here move accuracy by {glue:text}`fxp_search_change_id` points ID and
# {glue:text}`fxp_search_change_ood` OOD; PACT itself needs training, which this chapter does not do. A single
# calibration batch of {glue:text}`fxp_batch` images would set
# {glue:text}`fxp_batch_fl_differ`% of the activation FLs differently from the static calibration. GroupNorm costs
# {glue:text}`fxp_gn_divisions` integer divisions and {glue:text}`fxp_gn_roots` integer square roots per image, beside
# {glue:text}`fxp_macs` multiply-accumulates in the convolutions.

# %% [markdown]
# ## The ImageNet network, integer-only
#
# EfficientNet-Lite0, the network of {ref}`ch-digits-imagenet`, belongs to the family F8Net itself evaluates
# (MobileNet: BatchNorm, ReLU6, depthwise and pointwise convolutions). `lpft.fixedpoint.mobile.FixedPointLite0`
# deploys it the F8Net way: BatchNorm folded into each convolution's weight and bias; ReLU6 as the clip of the
# unsigned 8-bit codes; depthwise and pointwise convolutions and residual adds in integers (each checked against a
# plain int64 reference in the test suite, and compiled against eager, bit for bit); the global average pool as one
# int32 sum rounded once. Weights and activations get one fractional length per layer from F8Net's σ rule, on a
# static calibration of {glue:text}`fxp_n_calibration` ID training images; there is no quantisation-aware training.
# The models are that chapter's reported LP, FT and LP-FT of each seed, read back from its cache. "Float first $k$"
# is the ID accuracy ({glue:text}`fxp_lite_local_n` ID test images, evenly spread over the classes) of the same
# network with its first $k$
# layers left in float ($k = 0$: the integer network itself, computed exactly in float64), which says where the
# integer network loses.

# %%
lite_cfg = profiles.settings("experiments-digits-imagenet", cfg.profile)
lite_setup = protocol.imagenet_conditions(lite_cfg)
lite_records = deploy.deploy_all(lite_setup, list(range(cfg.seed, cfg.seed + lite_cfg.n_seeds)),
                                 paths.results("fixed-point-imagenet", cfg.profile),
                                 experiment_folder=paths.results("experiments-digits-imagenet", cfg.profile),
                                 cache=paths.PRETRAINED, models=paths.DIGIT_MODELS, n_calibration=cfg.n_calibration,
                                 jobs=cfg.jobs)
if cfg.profile == "full":  # a full run refreshes the committed archive
    archive(lite_records, paths.ARCHIVE / "fixed-point-imagenet-full", deploy.archive_name)
glue.number("fxp_lite_local_n", deploy.LOCALISE_IMAGES)


def float_first_columns(local: pd.DataFrame) -> pd.DataFrame:
    every = max(local.columns)  # every convolution in float: only the classifier in integers
    return local.rename(columns=lambda k: "integer network (%)" if k == 0 else
                        "every convolution in float (%)" if k == every else f"float first {k} (%)")


lite_summary, lite_local = deploy.lite0_summary(lite_records)
print(f"this run ({cfg.profile} profile): {len(lite_records)} seeds at resolution {lite_setup['resolution']}, "
      f"{lite_setup['epochs']} epochs per model; accuracies in %")
display(lite_summary, float_first_columns(lite_local))

# %%
lite_archived = load_archive(paths.ARCHIVE / "fixed-point-imagenet-full")
assert lite_archived, "no archived full-profile run: run this chapter with profile='full' (it writes the archive)"
la_summary, la_local = deploy.lite0_summary(lite_archived)
la0 = lite_archived[0]
print(f"archived full run: {len(lite_archived)} seeds at resolution {la0['config']['resolution']}, computed "
      f"{la0['date']} at git revision {la0['git_revision']}, code fingerprint {la0['code_fingerprint']} "
      f"({'the same as' if la0['code_fingerprint'] == lite_records[0]['code_fingerprint'] else 'differs from'} "
      f"this code); accuracies in %")
display(la_summary, float_first_columns(la_local))
glue.number("fxp_lite_n", len(lite_archived))
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    glue.numbers(f"fxp_lite_{key}", {"id_float": la_summary.loc[(m, "id"), "float"],
                                     "id_fixed": la_summary.loc[(m, "id"), "fixed"],
                                     "ood_float": la_summary.loc[(m, "ood"), "float"],
                                     "ood_fixed": la_summary.loc[(m, "ood"), "fixed"]})
id_drops = la_summary.xs("id", level="split")["drop"]
glue.text("fxp_lite_within", "within 1 point of float for every method" if (id_drops.abs() <= 1).all() else
          "not within 1 point of float: " + ", ".join(f"{m} loses {prose.fixed(d)} points" for m, d in id_drops.items()
                                                      if abs(d) > 1))
local_mean = la_local.mean()
glue.numbers("fxp_lite_first", {str(k): local_mean[k] for k in deploy.LOCALISE_LAYERS}, digits=3)
glue.number("fxp_lite_first_all", local_mean[max(la_local.columns)], digits=3)
glue.number("fxp_lite_float_id", la_summary.xs("id", level="split")["float"].mean(), digits=3);

# %% [markdown]
# In the archived full run ({glue:text}`fxp_lite_n` seeds), integer-only LP gets {glue:text}`fxp_lite_lp_id_fixed`% ID
# and {glue:text}`fxp_lite_lp_ood_fixed`% on inverted UCI (float {glue:text}`fxp_lite_lp_id_float`% /
# {glue:text}`fxp_lite_lp_ood_float`%), FT {glue:text}`fxp_lite_ft_id_fixed`% / {glue:text}`fxp_lite_ft_ood_fixed`%
# (float {glue:text}`fxp_lite_ft_id_float`% / {glue:text}`fxp_lite_ft_ood_float`%), LP-FT
# {glue:text}`fxp_lite_lpft_id_fixed`% / {glue:text}`fxp_lite_lpft_ood_fixed`% (float
# {glue:text}`fxp_lite_lpft_id_float`% / {glue:text}`fxp_lite_lpft_ood_float`%): ID accuracy is
# {glue:text}`fxp_lite_within`. Averaged over the methods, the integer network reaches {glue:text}`fxp_lite_first_0`%
# on the localisation images; with the stem in float {glue:text}`fxp_lite_first_1`%, with the first 4 layers in float
# {glue:text}`fxp_lite_first_4`%, the first 8 {glue:text}`fxp_lite_first_8`% and the first 16
# {glue:text}`fxp_lite_first_16`%, with every convolution in float (only the classifier in integers)
# {glue:text}`fxp_lite_first_all`% (float: {glue:text}`fxp_lite_float_id`% on the whole ID test set). Where the
# accuracy comes back as the first layers return to float, the loss is made there: one fractional length per layer for
# a BatchNorm-folded stem and depthwise weights, calibrated, not trained. F8Net reaches its 8-bit MobileNet V1 and V2
# accuracies (72.8% and 72.6% on ImageNet, against 72.4% and 72.7% in float) after 150 epochs of quantisation-aware
# training from the float checkpoint; this chapter does not train in fixed point.

# %% [markdown]
# ## The full profile: an archived run
#
# The page may have been executed in the `quick` profile (3 seeds, small grids). The records of a `full`-profile
# run (10 seeds, the digit chapter's full grids) are committed under `archive/fixed-point-full/` and read back here.

# %%
archived = load_archive(paths.ARCHIVE / "fixed-point-full")
if archived:
    arch_summary, arch_checks, arch = deploy.deployment_summary(archived)
    a0 = archived[0]
    print(f"archived run: {arch['n']} seeds, computed {a0['date']} at git revision {a0['git_revision']}, code "
          f"fingerprint {a0['code_fingerprint']} "
          f"({'the same as' if a0['code_fingerprint'] == records[0]['code_fingerprint'] else 'differs from'} "
          f"this code)")
    glue.number("fxp_arch_n", arch["n"], floor=0)
    glue.number("fxp_arch_lpwin_float", arch["lp_ood"]["float"], floor=0)
    glue.number("fxp_arch_lpwin_fixed", arch["lp_ood"]["fixed"], floor=0)
    glue.number("fxp_arch_ftwin_float", arch["ft_id"]["float"], floor=0)
    glue.number("fxp_arch_ftwin_fixed", arch["ft_id"]["fixed"], floor=0)
    glue.number("fxp_arch_max_drop", arch["max_drop"], digits=2)
    arch_means = deploy.deviation_means(archived)
    glue.number("fxp_arch_pool_differ_id", f"{arch_means.loc['id', 'pooled codes differ']:.1f}")
    for key, variant in {"pool": "pool: 8-bit codes rounded again", "image": "image: σ-rule FL",
                         "search": "activation FLs: grid search"}.items():
        for split in ("id", "ood"):
            glue.number(f"fxp_arch_{key}_change_{split}", points(deploy.variant_change(arch_means, variant, split)))
    display(arch_checks)
    display(arch_summary.loc[["LP", "FT", "LP-FT"]])
    display(pd.DataFrame({f"{split} (points)": [points(deploy.variant_change(arch_means, v, split))
                                                for v in deploy.VARIANTS]
                          for split in ("id", "ood")}, index=pd.Index(list(deploy.VARIANTS), name="one change")))
else:
    print("no archived full-profile run yet: `lpft-run fixed-point --profile full` writes archive/fixed-point-full/")
    for name in ("fxp_arch_n", "fxp_arch_lpwin_float", "fxp_arch_lpwin_fixed", "fxp_arch_ftwin_float",
                 "fxp_arch_ftwin_fixed", "fxp_arch_max_drop", "fxp_arch_pool_differ_id",
                 *(f"fxp_arch_{k}_change_{s}" for k in ("pool", "image", "search") for s in ("id", "ood"))):
        glue.number(name, "—")

# %% [markdown]
# ## What we found
#
# - **The format.** F8Net's σ rule picks the brute-force optimal fractional length on
#   {glue:text}`fxp_rule_agree_signed`% (signed) and {glue:text}`fxp_rule_agree_unsigned`% (unsigned) of a σ grid
#   spanning six decades ({numref}`fig-fxp-rule`).
# - **The kernel** agrees bit for bit with the int64 reference, eager and compiled, on {glue:text}`fxp_kernel_cases`
#   random cases ({glue:text}`fxp_kernel_mismatch` mismatches; the test suite adds thousands of property-based cases,
#   exact ties and saturation). Compiled, its epilogue is {glue:text}`fxp_fused_loops` generated loop after the
#   integer GEMM; in the committed benchmark the layer is {glue:text}`fxp_speed_vs_fp32` and
#   {glue:text}`fxp_speed_vs_eager` at batch 512, 512 → 512. PyTorch's int8 GEMM (`torch._int_mm`) is not used on
#   the CPU: under the pinned kernels it saturates on CPUs with AVX512-VNNI.
# - **Accuracy.** Integer-only, LP gets {glue:text}`fxp_lp_id_fixed`% ID / {glue:text}`fxp_lp_ood_fixed`% OOD
#   (float {glue:text}`fxp_lp_id_float`% / {glue:text}`fxp_lp_ood_float`%), FT {glue:text}`fxp_ft_id_fixed`% /
#   {glue:text}`fxp_ft_ood_fixed`% (float {glue:text}`fxp_ft_id_float`% / {glue:text}`fxp_ft_ood_float`%), LP-FT
#   {glue:text}`fxp_lpft_id_fixed`% / {glue:text}`fxp_lpft_ood_fixed`% (float {glue:text}`fxp_lpft_id_float`% /
#   {glue:text}`fxp_lpft_ood_float`%). The largest mean change of any method on any split is
#   {glue:text}`fxp_max_drop` points.
# - **The ranking.** LP beats FT out of distribution in {glue:text}`fxp_lpwin_float` of {glue:text}`fxp_n` seeds in
#   float and {glue:text}`fxp_lpwin_fixed` in fixed point. FT beats LP in distribution in {glue:text}`fxp_ftwin_float`
#   and {glue:text}`fxp_ftwin_fixed`. The full ranking of all methods is unchanged in {glue:text}`fxp_same_rank_ood`
#   of {glue:text}`fxp_n` seeds out of distribution and {glue:text}`fxp_same_rank_id` in distribution. Differences
#   between methods of a fraction of a point reorder easily. In the archived full-profile run of
#   {glue:text}`fxp_arch_n` seeds, LP beats FT out of distribution in {glue:text}`fxp_arch_lpwin_float` seeds in float
#   and {glue:text}`fxp_arch_lpwin_fixed` in fixed point, FT beats LP in distribution in
#   {glue:text}`fxp_arch_ftwin_float` and {glue:text}`fxp_arch_ftwin_fixed`, and no method's mean accuracy on any
#   split moves by more than {glue:text}`fxp_arch_max_drop` points. There, the double rounding of the pooled features
#   changes {glue:text}`fxp_arch_pool_differ_id`% of their codes on ID inputs and, put back, moves accuracy by
#   {glue:text}`fxp_arch_pool_change_id` points ID and {glue:text}`fxp_arch_pool_change_ood` OOD; the σ rule's image
#   FL instead of F8Net's FL 8 moves it by {glue:text}`fxp_arch_image_change_id` and
#   {glue:text}`fxp_arch_image_change_ood`; grid-searched activation FLs by {glue:text}`fxp_arch_search_change_id`
#   and {glue:text}`fxp_arch_search_change_ood`.
# - **Features.** Quantisation changes the penultimate features by {glue:text}`fxp_change_id` on ID inputs and
#   {glue:text}`fxp_change_ood` on OOD inputs (mean over methods, ×100). Fine-tuning itself changes FT's features by
#   {glue:text}`fxp_ft_change_id` on ID inputs. Compared with fine-tuning, 8-bit fixed point is a small perturbation.
# - **Faithfulness to F8Net.** The image format and the average pool now follow F8Net: the pooled features are
#   rounded once, which changes {glue:text}`fxp_pool_differ_id`% of their codes on ID inputs. What still differs is
#   listed, with its measured effect, in the table above: GroupNorm computed in integers instead of BatchNorm folded
#   into the weights, the σ-rule FL as the activation clip instead of PACT, one static calibration instead of a
#   running average of per-batch FLs, and no quantisation-aware training (calibration alone). The CUDA path of the
#   kernel follows `_int_mm`'s documented shape rules but has not been run on a GPU.

# %% tags=["remove-input"]
# The verdict on each claim of the paper this chapter tests, computed above; the front page reads it (lpft.book.claims).
from lpft.book import claims
if archived:  # the archived full-profile run, in 8-bit fixed point
    held = int(arch["ft_id"]["fixed"] >= 0.8 * arch["n"]) + int(arch["lp_ood"]["fixed"] >= 0.8 * arch["n"])
    glue.verdict("ft-id-lp-ood", claims.by_count(held, of=2),
                 because=f"in 8-bit fixed point, archived full run: FT beats LP ID in {arch['ft_id']['fixed']} of "
                         f"{arch['n']} seeds, LP beats FT OOD in {arch['lp_ood']['fixed']} of {arch['n']}")
else:
    glue.verdict("ft-id-lp-ood", "not run here", because="no archived full-profile run of this chapter")

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
# (ch-digits)=
# # Real digits on a CPU: LP vs FT vs LP-FT under a real shift
#
# **Claim** ({cite:t}`kumar2022finetuning`, Sections 1 and 4). With good pretrained features and a large distribution
# shift, fine-tuning (FT) beats linear probing (LP) in distribution but loses to it out of distribution, and LP-FT
# keeps the in-distribution gain of FT without its OOD loss. The theory chapters showed the mechanism exactly in a
# linear model; this chapter runs the same protocol on real images that ship with pip packages, in CPU minutes:
# 5,000 MNIST digits and the 1,797 UCI optical-recognition digits, two collections written and scanned differently.
#
# All hyperparameters are selected on **ID validation** accuracy, as in the paper ("We early stop and choose the best
# learning rate using ID validation accuracy", ICLR 2022 submission, Section 4.1); the OOD test set is only measured.

# %% tags=["parameters"]
profile = "quick"  # "quick" (CI, CPU, 3 seeds) or "full" (10 seeds, paper-sized grids)
seed = 0  # first downstream seed: the chapter runs seeds seed, seed + 1, ...
device = "auto"  # "auto" | "cpu" | "cuda" (these 8x8 images train on the CPU either way)

# %%
from lpft.book import glue, paths, plotting, start_chapter
import numpy as np
import pandas as pd
import seaborn as sns
from lpft import digits, finetune, protocol, prose, report
from lpft.records import archive, load_archive

cfg = start_chapter("experiments-digits", profile=profile, seed=seed, device=device)
print(cfg)

# %% [markdown]
# ## The data and the shift
#
# Both collections are brought to a common format: MNIST's central $20\times20$ crop is area-downsampled to $8\times8$
# (UCI's native resolution), and each image is scaled to $[0, 1]$ by its 99th-percentile pixel. Each collection is
# split once, by a fixed seed, into two halves. **Half A** of both collections is the *pretraining pool*;
# **half B** is used downstream: MNIST's half B gives the ID train / ID-val / ID-test sets (60/10/30%), UCI's half B the
# OOD test set. The downstream seed changes the ID split and the initialisation, never the pool.
#
# On top of the natural shift we apply a controlled one to the OOD side: contrast inversion of strength $s$,
# $x \mapsto (1-s)\,x + s\,(1-x)$. At $s = 1$ the digits are white-on-black turned black-on-white; at $s = 0$ the OOD set
# is plain UCI. (At $s = \tfrac12$ every image is constant grey, so the sweep below skips the middle.)

# %%
setup = protocol.paper_conditions(cfg)  # pool covers both collections and their inverted copies: "good features"
task = protocol.make_task(setup, cfg.seed)
pool = digits.pretraining_pool(include_shifts=tuple(tuple(s) for s in setup["pool_shifts"]))
sizes = {"pretraining pool (half A, both, + inverted)": len(pool), "ID train (MNIST)": len(task.train),
         "ID-val (MNIST)": len(task.val), "ID-test (MNIST)": len(task.test_id), "OOD test (UCI, inverted)": len(task.test_ood)}
pd.DataFrame({"images": sizes})

# %%
examples = {"MNIST (ID)": task.test_id.tensors[0][:8], "UCI (natural shift)": protocol.make_task(setup, cfg.seed, 0.0).test_ood.tensors[0][:8],
            "UCI inverted (s = 1)": task.test_ood.tensors[0][:8]}
fig, axes = plotting.figure(ncols=1, width=6.4, height=2.6)
axes.imshow(np.concatenate([np.concatenate(list(x[:, 0].numpy()), axis=1) for x in examples.values()], axis=0),
            cmap="gray_r", vmin=0, vmax=1)
axes.set(yticks=[3.5 + 8 * i for i in range(3)], yticklabels=list(examples), xticks=[], xlabel="8 × 8 pixel images")
axes.grid(False)
plotting.finish(fig, "fig_digits_examples")

# %% [markdown]
# ```{glue:figure} fig_digits_examples
# :name: fig-digits-examples
#
# The first eight test images of each domain, at the common $8\times8$ resolution (dark = ink). UCI digits fill the
# frame and have thicker strokes than the centre-cropped MNIST digits; inversion swaps ink and paper.
# ```
#
# ## Pretraining, the methods and the protocol
#
# A small CNN (five $3\times3$ convolutions with GroupNorm, global average pooling, a 128-dimensional feature) is
# pretrained with supervision on the pool, once, and cached to `cache/pretrained/` under a hash of its configuration.
# Then, for every downstream seed, each method starts from that backbone and sees **only MNIST** training images:
#
# - **LP**: logistic regression (scikit-learn, L-BFGS) on the frozen features, $C$ chosen on ID-val;
# - **FT**: a fresh random head, all weights trained with SGD (momentum 0.9, cosine schedule, batch 64), learning rate
#   chosen on ID-val, early stopping on ID-val;
# - **LP-FT**: the selected LP head, then all weights, with a learning-rate grid 100× below FT's (the ratio of the
#   official code's grids in `scripts/run_adaptation_experiments.py`: $\{3\cdot10^{-7}, \dots, 10^{-4}\}$ for LP-FT
#   against $\{3\cdot10^{-5}, \dots, 10^{-2}\}$ for FT);
# - **WiSE-FT** {cite:p}`wortsman2022robust`: the weights $(1-\alpha)\,\theta_{\mathrm{LP}} + \alpha\,\theta_{\mathrm{FT}}$;
# - **L2-SP** {cite:p}`li2018explicit`: FT with a penalty on the distance to the pretrained backbone;
# - **surgical** {cite:p}`lee2023surgical`: only one block of the backbone (and the head) is trained.
#
# Each seed's results (selected hyperparameters, accuracies, feature change, the full selection grids) are written to one
# record file with its configuration, library versions and git revision; the tables below are read back from them.

# %%
folder = paths.results("experiments-digits", cfg.profile)
seeds = list(range(cfg.seed, cfg.seed + cfg.n_seeds))
# computed, or read back if already recorded
records = protocol.run_all(setup, seeds, folder, cache=paths.PRETRAINED, models=paths.DIGIT_MODELS, jobs=cfg.jobs)
if cfg.profile == "full":  # a full run refreshes the committed archive that quick-profile pages show
    archive(records, paths.ARCHIVE / "experiments-digits-full", protocol.archive_name)
print(f"{len(records)} records in {paths.relative(folder)}; code fingerprint {records[0]['code_fingerprint']}")
print(f"compute time of the {cfg.profile} profile, summed over seeds: "
      f"elapsed: {sum(r['results']['seconds'] for r in records):.1f} s")
results = protocol.long_table(records)

# %% [markdown]
# ## The paper's conditions: good features, large shift
#
# With the pool covering both collections and their inverted copies, the backbone's features are good for the OOD
# domain; the shift to inverted UCI is large. Mean accuracy over seeds with a 90% interval like the paper's,
# $1.645\,\sigma/\sqrt{n}$ (the formula of the official code's result notebooks):

# %%
large = results[results["strength"] == 1.0]
main = protocol.summary(large)
main

# %%
claims, found = protocol.claims(records)
n, lp_beats_ft_ood, ft_beats_lp_id = found["n"], found["lp_wins"], found["ft_wins"]
glue.number("dig_n", n)
glue.number("dig_lp_ood_wins", lp_beats_ft_ood)
glue.number("dig_ft_id_wins", ft_beats_lp_id)
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    glue.number(f"dig_{key}_id", main.loc[m, "ID"], digits=3)
    glue.number(f"dig_{key}_ood", main.loc[m, "OOD"], digits=3)
glue.text("dig_id_compare", prose.compare(main.loc["FT", "ID"] / 100, main.loc["LP", "ID"] / 100,
                                          both="{} for FT and LP alike", versus="{} for FT against {} for LP"))
glue.number("dig_lp_ood_pm", main.loc["LP", "OOD ±"], digits=2)
glue.number("dig_lpft_verdict", "within or above" if found["lpft_in_lp_interval"] else "below")
print(f"LP > FT OOD in {lp_beats_ft_ood}/{n} seeds; FT > LP ID in {ft_beats_lp_id}/{n} seeds; "
      f"LP-FT OOD {'within or above' if found['lpft_in_lp_interval'] else 'below'} LP's 90% interval")

# %%
means = large.groupby("method", sort=False)[["ID", "OOD"]].mean().reset_index()
palette = {**plotting.METHOD_COLORS, "WiSE-FT": "#cc78bc", "L2-SP": "#ca9161", "surgical": "#949494"}
fig, ax = plotting.figure(width=6.0, height=4.2)
sns.scatterplot(data=large, x="ID", y="OOD", hue="method", palette=palette, alpha=0.45, s=30, ax=ax, legend=False)
sns.scatterplot(data=means, x="ID", y="OOD", hue="method", palette=palette, s=160, marker="D", edgecolor="black", ax=ax)
ax.set(xlabel="ID accuracy, MNIST test (%)", ylabel="OOD accuracy, inverted UCI (%)")
ax.legend(fontsize="small", title=None)
plotting.finish(fig, "fig_digits_scatter")

# %% [markdown]
# ```{glue:figure} fig_digits_scatter
# :name: fig-digits-scatter
#
# ID vs OOD accuracy of every method under the large shift: one small dot per seed, a diamond for the mean over seeds.
# Up and to the right is better.
# ```
#
# Over {glue:text}`dig_n` seeds, ID accuracy is {glue:text}`dig_id_compare`, but FT reaches only
# {glue:text}`dig_ft_ood`% OOD against LP's {glue:text}`dig_lp_ood`%: LP beats FT out of distribution in
# {glue:text}`dig_lp_ood_wins` of {glue:text}`dig_n` seeds, FT beats LP in distribution in {glue:text}`dig_ft_id_wins`.
# LP-FT reaches {glue:text}`dig_lpft_id`% ID and {glue:text}`dig_lpft_ood`% OOD, {glue:text}`dig_lpft_verdict` LP's
# interval ({glue:text}`dig_lp_ood`% ± {glue:text}`dig_lp_ood_pm`).
#
# ## The natural shift alone
#
# The same models, evaluated on plain UCI ($s = 0$): here the shift is real but small.

# %%
natural = protocol.summary(results[results["strength"] == 0.0])
glue.number("dig_nat_lp_ood", natural.loc["LP", "OOD"], digits=3)
glue.number("dig_nat_ft_ood", natural.loc["FT", "OOD"], digits=3)
glue.number("dig_nat_lpft_ood", natural.loc["LP-FT", "OOD"], digits=3)
natural

# %% [markdown]
# ## The gap grows with the size of the shift
#
# Training never sees the OOD domain, so every trained model can be evaluated at every inversion strength
# ({numref}`fig-digits-gap`).

# %%
gap = results.pivot_table(index=["seed", "strength"], columns="method", values="OOD").reset_index()
gap = pd.concat([gap.assign(comparison=f"{m} − LP", gap=gap[m] - gap["LP"]) for m in ("FT", "LP-FT")])
fig, ax = plotting.figure(width=6.0, height=3.8)
sns.lineplot(data=gap, x="strength", y="gap", hue="comparison", marker="o", errorbar=("pi", 90),
             palette={"FT − LP": plotting.METHOD_COLORS["FT"], "LP-FT − LP": plotting.METHOD_COLORS["LP-FT"]}, ax=ax)
ax.axhline(0, color="black", lw=0.8)
ax.set(xlabel="inversion strength $s$ of the OOD images", ylabel="OOD accuracy difference (points)")
ax.legend(fontsize="small", title=None)
plotting.finish(fig, "fig_digits_gap")
gap_at = gap.groupby(["comparison", "strength"])["gap"].mean().unstack(0).round(1)
glue.number("dig_gap_s1", gap_at.loc[1.0, "FT − LP"], digits=3)
glue.number("dig_gap_s0", gap_at.loc[0.0, "FT − LP"], digits=3)
gap_at

# %% [markdown]
# ```{glue:figure} fig_digits_gap
# :name: fig-digits-gap
#
# OOD accuracy of FT and LP-FT minus LP's, against the strength of the contrast inversion applied to the UCI test
# images (mean over seeds, 90% band of seeds). Below zero, LP is better out of distribution. Strengths near
# $s = \tfrac12$ (no contrast left) are not evaluated; the line only joins the measured points.
# ```
#
# ## Feature distortion
#
# How much fine-tuning changes the penultimate features, as this book measures it: the mean over examples and
# dimensions of the squared difference between the pretrained and the fine-tuned features, ×100, on ID and on OOD
# inputs (the quantity a notebook of the official code computes). The paper itself reports a different quantity, an
# average Euclidean distance per example (ICLR 2022 submission, Section 4.3), so its numbers are not compared here.

# %%
change_mean = pd.DataFrame(found["change"]).T.rename(columns={"id": "ID inputs", "ood": "OOD inputs"})
glue.text("dig_change_ratio", prose.ratio(found["ratio"], unit="× as much as", same="about as much as"))
glue.number("dig_change_ft_id", change_mean.loc["FT", "ID inputs"])
glue.number("dig_change_ft_ood", change_mean.loc["FT", "OOD inputs"])
report.table(change_mean.reset_index(names="method"))

# %% [markdown]
# FT changes the features {glue:text}`dig_change_ratio` LP-FT on ID inputs. On FT, the change is
# {glue:text}`dig_change_ft_id` on ID inputs and {glue:text}`dig_change_ft_ood` on OOD inputs.
#
# ## Learning-rate sensitivity
#
# Every setting of the selection grids was evaluated on ID and OOD test data (measured, never used to select).

# %%
grids = protocol.grid_table(records)
lr_grid = grids[grids["method"].isin(["FT", "LP-FT"])]
lr_mean = lr_grid.groupby(["method", "lr"])[["val_acc", "id_acc", "ood_acc"]].mean().round(1)
fig, axes = plotting.figure(ncols=2, width=9.0, height=3.6, sharex=True)
for ax, col, label in zip(axes, ("id_acc", "ood_acc"), ("ID accuracy (%)", "OOD accuracy, inverted UCI (%)")):
    sns.lineplot(data=lr_grid, x="lr", y=col, hue="method", palette=plotting.METHOD_COLORS, marker="o",
                 errorbar=("pi", 90), ax=ax)
    ax.set(xscale="log", xlabel="learning rate", ylabel=label)
axes[1].get_legend().remove()
plotting.finish(fig, "fig_digits_lr")
for method, lrs in (("LP-FT", cfg.lpft_lr), ("FT", cfg.ft_lr)):
    key = method.replace("-", "").lower()
    for end, lr in (("small", min(lrs)), ("large", max(lrs))):
        glue.number(f"dig_{key}_{end}_lr", lr)
        glue.number(f"dig_{key}_{end}_lr_ood", lr_mean.loc[(method, lr), "ood_acc"], digits=3)
lr_mean

# %% [markdown]
# ```{glue:figure} fig_digits_lr
# :name: fig-digits-lr
#
# ID (left) and OOD (right) accuracy of FT and LP-FT at every learning rate of the selection grid (mean over seeds,
# 90% band). The selected learning rate is the one with the best ID-val accuracy.
# ```
#
# ```{admonition} A design choice made after seeing OOD results
# :class: warning
# An earlier version of this chapter gave LP-FT a grid only 10× below FT's. ID validation then often picked its
# largest rate, where LP-FT moved the features more and lost part of LP's OOD accuracy. We moved to the ratio of the
# official code's grids (100×), which is what this page runs. The new ratio is the official code's, not one tuned on
# the OOD test set, but the decision to revisit it was informed by OOD results: read the LP-FT numbers with that in mind. The
# learning-rate figure shows how much LP-FT's OOD accuracy depends on the rate.
# ```
#
# ## Why this design: two ablations
#
# Two choices above were measured, not guessed. The same protocol (LP, FT and LP-FT only) is run with a backbone
# **without normalisation layers**, and with a backbone pretrained on a pool **without the inverted copies**, whose
# features were never shaped by inverted digits: the paper's "good features" precondition fails there. The next
# chapter ({ref}`ch-digits-extra`) varies three more conditions: contrastive instead of supervised pretraining, fewer
# ID labels, and other kinds of shift.

# %%
variants = {"GroupNorm, pool with inverted copies (above)": setup,
            "no normalisation layers": {**setup, "norm": "none", "methods": ["LP", "FT", "LP-FT"]},
            "pool without inverted copies": {**setup, "pool_shifts": [], "methods": ["LP", "FT", "LP-FT"]}}
rows = []
for name, variant in variants.items():
    recs = records if variant is setup else protocol.run_all(variant, seeds, folder, cache=paths.PRETRAINED, jobs=cfg.jobs)
    df = protocol.long_table(recs).query("strength == 1.0 and method in ['LP', 'FT', 'LP-FT']")
    wide_acc = df.pivot(index="seed", columns="method", values="OOD")
    means = df.groupby("method")[["ID", "OOD"]].mean()
    rows.append({"setting": name, **{f"{m} {k}": means.loc[m, k] for m in ("LP", "FT", "LP-FT") for k in ("ID", "OOD")},
                 "LP > FT OOD (seeds)": f"{int((wide_acc['LP'] > wide_acc['FT']).sum())}/{n}"})
ablation = pd.DataFrame(rows).set_index("setting").round(1)
glue.number("dig_abl_none_lpft", ablation.iloc[1]["LP-FT OOD"], digits=3)
glue.number("dig_abl_none_lp", ablation.iloc[1]["LP OOD"], digits=3)
glue.number("dig_abl_pool_lp", ablation.iloc[2]["LP OOD"], digits=3)
glue.number("dig_abl_pool_ft", ablation.iloc[2]["FT OOD"], digits=3)
ablation.T

# %% [markdown]
# Without normalisation layers LP-FT reaches {glue:text}`dig_abl_none_lpft`% OOD against LP's
# {glue:text}`dig_abl_none_lp`%. Without inverted digits in the pretraining pool,
# LP's OOD accuracy on inverted UCI is {glue:text}`dig_abl_pool_lp`% and FT's {glue:text}`dig_abl_pool_ft`% (chance is
# 10%): when the features are not good for the OOD domain, no method transfers, and the comparison says nothing about
# feature distortion.
#
# ## Which of the paper's claims hold here
#
# Each row is computed from the records above; "at least 80% of seeds" is this book's criterion for a robust
# ordering.

# %%
glue.number("dig_claims_held", int((claims["holds"] == "yes").sum()))
glue.number("dig_claims_n", len(claims))
claims

# %% [markdown]
# ## The full profile: an archived run
#
# The page you are reading may have been executed in the `quick` profile (3 seeds, small grids). The records of a
# `full`-profile run (10 seeds, the paper-sized grids) are committed under `archive/experiments-digits-full/`, with the
# code fingerprint, git revision and date at which they were computed; they are read back here, not recomputed.

# %%
archived = load_archive(paths.ARCHIVE / "experiments-digits-full")
assert archived, "no archived full-profile run: run the chapter with profile='full' and lpft.records.archive(...)"
arch_claims, arch = protocol.claims(archived)
first = archived[0]
print(f"archived run: {arch['n']} seeds, {first['config']['epochs']} epochs per run, computed {first['date']} at "
      f"git revision {first['git_revision']}, code fingerprint {first['code_fingerprint']} "
      f"({'the same as' if first['code_fingerprint'] == records[0]['code_fingerprint'] else 'differs from'} this code); "
      f"compute time summed over seeds {sum(r['results']['seconds'] for r in archived):.0f} s on "
      f"{first['environment']['cpu_count']} CPUs")
glue.number("dig_arch_n", arch["n"])
glue.number("dig_arch_lp_wins", arch["lp_wins"])
glue.number("dig_arch_ft_wins", arch["ft_wins"])
glue.number("dig_arch_held", int((arch_claims["holds"] == "yes").sum()))
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    glue.number(f"dig_arch_{key}_id", arch["main"].loc[m, "ID"], digits=3)
    glue.number(f"dig_arch_{key}_ood", arch["main"].loc[m, "OOD"], digits=3)
glue.number("dig_arch_lp_ood_pm", arch["main"].loc["LP", "OOD ±"], digits=2)
arch["main"].reindex(finetune.METHODS)

# %%
arch_claims

# %% [markdown]
# ## What we found
#
# - {glue:text}`dig_claims_held` of the {glue:text}`dig_claims_n` claims hold in this run, and
#   {glue:text}`dig_arch_held` of {glue:text}`dig_claims_n` in the archived full-profile run of
#   {glue:text}`dig_arch_n` seeds. There, LP beats FT out of distribution in {glue:text}`dig_arch_lp_wins` of
#   {glue:text}`dig_arch_n` seeds ({glue:text}`dig_arch_lp_ood`% ± {glue:text}`dig_arch_lp_ood_pm` vs
#   {glue:text}`dig_arch_ft_ood`%), FT beats LP in distribution in {glue:text}`dig_arch_ft_wins`
#   ({glue:text}`dig_arch_ft_id`% vs {glue:text}`dig_arch_lp_id`%), and LP-FT reaches {glue:text}`dig_arch_lpft_id`% ID
#   and {glue:text}`dig_arch_lpft_ood`% OOD.
# - **LP vs FT.** With features pretrained on both collections and their inverted copies and a large shift, LP beats FT out of distribution in {glue:text}`dig_lp_ood_wins` of {glue:text}`dig_n` seeds
#   ({glue:text}`dig_lp_ood`% vs {glue:text}`dig_ft_ood`%), and FT beats LP in distribution in
#   {glue:text}`dig_ft_id_wins` of {glue:text}`dig_n` ({glue:text}`dig_id_compare`).
# - **LP-FT** reaches {glue:text}`dig_lpft_id`% ID and {glue:text}`dig_lpft_ood`% OOD: {glue:text}`dig_lpft_verdict`
#   LP's 90% interval out of distribution; whether it also keeps FT's ID accuracy is in the table.
# - **Learning rates.** Across its grid, LP-FT's mean OOD accuracy goes from {glue:text}`dig_lpft_small_lr_ood`% at
#   {glue:text}`dig_lpft_small_lr` to {glue:text}`dig_lpft_large_lr_ood`% at {glue:text}`dig_lpft_large_lr`; FT's from
#   {glue:text}`dig_ft_small_lr_ood`% at {glue:text}`dig_ft_small_lr` to {glue:text}`dig_ft_large_lr_ood`% at
#   {glue:text}`dig_ft_large_lr` ({numref}`fig-digits-lr`). ID validation cannot see the OOD cost of a larger rate:
#   the grid itself (100× below FT's for LP-FT, as in the official code) is part of the method.
# - **The gap depends on the shift.** FT − LP OOD is {glue:text}`dig_gap_s0` points on plain UCI and
#   {glue:text}`dig_gap_s1` points on inverted UCI; on the natural shift alone the OOD accuracies are LP
#   {glue:text}`dig_nat_lp_ood`%, FT {glue:text}`dig_nat_ft_ood`%, LP-FT {glue:text}`dig_nat_lpft_ood`%.
# - **The preconditions matter.** Without inverted digits in the pretraining pool, LP gets
#   {glue:text}`dig_abl_pool_lp`% and FT {glue:text}`dig_abl_pool_ft`% OOD (see the ablations).
# - **Feature distortion.** FT changes the penultimate features {glue:text}`dig_change_ratio` LP-FT
#   (on ID inputs; {glue:text}`dig_change_ft_id` on ID vs {glue:text}`dig_change_ft_ood` on OOD inputs for FT). On
#   Living-17 the paper reports that "the average distance for ID examples (0.019) is more than for OOD examples
#   (0.017)" (ICLR 2022 submission, Section 4.3; Euclidean distances, another quantity than this page's); the table
#   says whether FT's change is also larger on ID inputs here.

# %% tags=["remove-input"]
# The verdict on each claim of the paper this chapter tests, computed above; the front page reads it (lpft.book.claims).
from lpft import prose
from lpft.book import claims, glue
# from the archived full-profile run (arch_claims, arch), not from the quick run above; the rows of lpft.protocol.claims:
# FT ID, LP OOD, LP-FT OOD, LP-FT ID, distortion, ID vs OOD change, natural shift
held = arch_claims.set_index("claim")["holds"].eq("yes")
said = arch_claims.set_index("claim")["measured"]
arch_rows = list(held.index)
where = f"archived full run, {arch['n']} seeds"
glue.verdict("ft-id-lp-ood", claims.by_count(int(held[arch_rows[0]]) + int(held[arch_rows[1]]), of=2),
             because=f"{where}: FT beats LP ID in {said[arch_rows[0]]}, LP beats FT OOD in {said[arch_rows[1]]} "
                     f"(inverted UCI)")
arch_main = arch["main"]
best = {s: arch_main.loc["LP-FT", s] >= arch_main.loc[["LP", "FT"], s].max() for s in ("ID", "OOD")}
within = {"OOD": bool(held[arch_rows[2]]), "ID": bool(held[arch_rows[3]])}  # within LP's OOD, FT's ID 90% interval
lpft_best = claims.by_count(sum(best[s] or within[s] for s in best), of=2)
acc = {m: f"{prose.fixed(arch_main.loc[m, 'ID'])}% ID / {prose.fixed(arch_main.loc[m, 'OOD'])}% OOD"
       for m in ("LP-FT", "LP", "FT")}
glue.verdict("lpft-best", "holds with a caveat" if lpft_best == "holds" and not all(best.values()) else lpft_best,
             because=f"{where}: LP-FT {acc['LP-FT']} against LP {acc['LP']} and FT {acc['FT']}; LP-FT is "
                     + ", ".join(("the best " if best[s] else "within the 90% interval of the best " if within[s]
                                  else "not the best ") + s for s in ("ID", "OOD")))
glue.verdict("id-features-change-more", "holds" if held[arch_rows[5]] else "fails",
             because=f"{where}: FT's feature change on ID vs OOD inputs: {said[arch_rows[5]]}")
glue.verdict("lpft-changes-less", "holds" if held[arch_rows[4]] else "fails",
             because=f"{where}: FT changes the features {said[arch_rows[4]]} as much as LP-FT (ID inputs)")

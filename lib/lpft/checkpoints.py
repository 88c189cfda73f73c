"""Trained weights on disk, each beside its description: written so that a reader never sees half of it, read back
only after every check passes, and the digest of tensors that cache keys are made of.

The book caches two kinds of weights: the pretrained digit backbones (:mod:`lpft.pretrain`) and the digit chapter's
selected models (:mod:`lpft.protocol`). Each is a pair of files: ``<stem>.json``, the description (the config or key
it was trained from, and whatever the caller stores with it), written first, and ``<stem>.pt``, the ``state_dict``;
both atomically (:func:`lpft.records.atomic_write`). A ``.pt`` therefore never exists without its description, and
parallel workers that compute the same weights write the same content. :func:`load` refuses a pair whose description
does not match, whose file torch cannot read, or whose parameters differ from the model's in name, shape or dtype, or
are not finite: a cache is never partly loaded or silently retrained over.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from lpft.records import atomic_write, atomic_write_text, digest


def tensors_digest(tensors: Iterable[torch.Tensor] | dict[str, torch.Tensor]) -> str:
    """sha256 (64 hex digits) of tensors' dtypes, shapes and bytes, in order; of a ``dict`` (a ``state_dict``), of
    each name too, in sorted order. A dataset's content (its ``tensors``) or a model's weights enter cache keys so."""
    if isinstance(tensors, dict):
        items = sorted(tensors.items())
    else:
        items = [("", t) for t in tensors]
    chunks = []
    for name, t in items:
        t = t.detach().contiguous().cpu()
        chunks += [f"{name}{t.dtype}{tuple(t.shape)}", t.numpy().tobytes()]
    return digest(*chunks, length=None)


def save(js: Path, description: dict, pt: Path, model: nn.Module) -> None:
    """Write ``description`` to ``js`` (JSON; values it cannot encode as strings), then ``model``'s state_dict to
    ``pt``, each atomically."""
    Path(pt).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(js, json.dumps(description, indent=2, default=str))
    atomic_write(pt, lambda tmp: torch.save(model.state_dict(), tmp))


def load(js: Path, pt: Path, model: nn.Module, matches: Callable[[dict], bool], what: str) -> dict:
    """Load the state_dict ``pt`` into ``model`` (in place) after checking it, and return the description ``js``
    stored beside it. Refused with a ``RuntimeError`` that names the fix (delete both files): a description that cannot
    be read or for which ``matches(description)`` is false, a file torch cannot read, parameter names other than
    ``model``'s, a wrong shape or dtype, a non-finite value. ``what`` names the cache in the message."""
    def refuse(why: str):
        return RuntimeError(f"{what} {pt} is corrupt or incomplete ({why}); delete {pt} and {js} to retrain it")

    try:
        saved = json.loads(Path(js).read_text())
    except (OSError, ValueError) as e:
        raise refuse(f"its description {Path(js).name} cannot be read: {e}") from e
    if not matches(saved):
        raise refuse(f"its description {Path(js).name} differs from the requested one")
    try:
        state = torch.load(pt, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise refuse(f"torch.load failed: {e}") from e
    expected = model.state_dict()
    if not isinstance(state, dict) or state.keys() != expected.keys():
        raise refuse(f"its parameter names differ from {type(model).__name__}'s")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[name].shape \
                or value.dtype != expected[name].dtype:
            raise refuse(f"parameter {name} has the wrong shape or type")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise refuse(f"parameter {name} is not finite")
    model.load_state_dict(state)
    return saved

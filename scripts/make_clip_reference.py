"""Write the fixtures that tests/test_clip.py checks :mod:`lpft.scale.clip` against, computed by open_clip itself.

open_clip cannot be installed beside the book's pinned CPU torch, so this script runs in a throwaway virtualenv outside
the repository and is not run by CI; its outputs are committed::

    python3 -m venv /tmp/ocvenv
    /tmp/ocvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 open_clip_torch==3.3.0   # the committed fixtures
    /tmp/ocvenv/bin/python scripts/make_clip_reference.py          # from the repository root

It writes

* ``tests/fixtures/clip-openclip-reference.pt`` (``torch.load(..., weights_only=True)``): for two small CLIP image
  towers built by open_clip with random weights (a ModifiedResNet and a QuickGELU ViT), their visual state_dicts
  (with the ``visual.`` prefix, as in open_clip's files), a fixed input batch and open_clip's ``encode_image``
  outputs (float32, eval mode, not normalised); for the ViT also the output of the same weights with ``nn.GELU``
  (open_clip without ``quick_gelu``); the open_clip and torch versions. To halve the file, weights and inputs are
  rounded to float16 values first and stored as float16 (as OpenAI's own files are); the outputs are computed in
  float32 from those values;
* ``tests/fixtures/clip-openclip-keys.json``: every ``visual.*`` key with its shape of open_clip's own "RN50" and
  "ViT-B-16" models (``pretrained=None``: no weights), and the names of their other (text-tower) keys.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import open_clip
import torch
from open_clip.model import CLIP

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TEXT = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
# open_clip configurations, and the lpft.scale.clip.build arguments that describe the same towers
TINY = {
    "rn": {"embed_dim": 24, "quick_gelu": True,
           "vision_cfg": {"layers": [1, 2, 1, 1], "width": 4, "head_width": 32, "image_size": 64},
           "lpft": {"arch": "RN50", "width": 4, "layers": [1, 2, 1, 1], "heads": 4, "image_size": 64,
                    "output_dim": 24}},
    "vit": {"embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"layers": 2, "width": 32, "head_width": 8, "patch_size": 8, "image_size": 32},
            "lpft": {"arch": "ViT-B-16", "width": 32, "layers": 2, "heads": 4, "patch_size": 8,
                     "image_size": 32, "output_dim": 16}},
}


def perturb(visual: torch.nn.Module, gen: torch.Generator) -> None:
    """Make every 1-d parameter and buffer non-trivial (open_clip starts BN/LN scales at 1 or 0, biases and running
    means at 0, variances at 1), so that the comparison exercises each of them; matrices keep open_clip's random
    initialisation."""
    with torch.no_grad():
        for name, t in visual.state_dict().items():
            if not t.is_floating_point() or t.ndim != 1 or name == "class_embedding":
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("weight"):
                t.copy_(1 + 0.2 * torch.randn(t.shape, generator=gen))
            else:  # biases, running means
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))


def round_to_half(visual: torch.nn.Module) -> None:
    with torch.no_grad():
        for t in visual.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def tiny_reference(name: str, cfg: dict, seed: int) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 100)
    model = CLIP(cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=TEXT, quick_gelu=cfg["quick_gelu"])
    perturb(model.visual, gen)
    round_to_half(model.visual)
    model.eval()
    size = cfg["vision_cfg"]["image_size"]
    x16 = torch.randn(3, 3, size, size, generator=gen).half()
    with torch.no_grad():
        out = model.encode_image(x16.float())
    entry = {"open_clip_config": json.dumps({k: cfg[k] for k in ("embed_dim", "quick_gelu", "vision_cfg")}),
             "lpft": cfg["lpft"], "input": x16, "output": out.float().clone(),
             "state_dict": {f"visual.{k}": (v.half() if v.is_floating_point() else v).detach().clone().contiguous()
                            for k, v in model.visual.state_dict().items()}}
    if name == "vit":  # the same weights with exact GELU: open_clip's activation when quick_gelu is off
        gelu = CLIP(cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=TEXT, quick_gelu=False).eval()
        gelu.visual.load_state_dict(model.visual.state_dict())
        with torch.no_grad():
            entry["output_gelu"] = gelu.encode_image(x16.float()).clone()
    print(f"{name}: {sum(v.numel() for v in entry['state_dict'].values())} parameters, output {tuple(out.shape)}")
    return entry


def full_size_keys() -> dict:
    out = {}
    for arch in ("RN50", "ViT-B-16"):
        model = open_clip.create_model(arch, pretrained=None)
        state = model.state_dict()
        out[arch] = {"visual": {k: list(v.shape) for k, v in state.items() if k.startswith("visual.")},
                     "other_keys": sorted(k for k in state if not k.startswith("visual."))}
        print(f"{arch}: {len(out[arch]['visual'])} visual keys, {len(out[arch]['other_keys'])} others")
    return out


def main() -> None:
    torch.set_num_threads(1)
    versions = {"open_clip": str(open_clip.__version__), "torch": str(torch.__version__)}
    reference = {**versions, "models": {name: tiny_reference(name, cfg, seed)
                                        for seed, (name, cfg) in enumerate(TINY.items())}}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(reference, buffer)
    (FIXTURES / "clip-openclip-reference.pt").write_bytes(buffer.getvalue())
    keys = {**versions, **full_size_keys()}
    (FIXTURES / "clip-openclip-keys.json").write_text(json.dumps(keys, indent=1) + "\n")
    print(f"wrote {FIXTURES}: reference {len(buffer.getvalue()) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

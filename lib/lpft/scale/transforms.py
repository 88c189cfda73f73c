"""The transforms from stored uint8 images to the network's input, per batch on the training device: the evaluation
transform (:func:`prepare`: scale, centre crop, resize, normalise) and the official configs' training augmentations
(BREEDS: RandomResizedCrop + flip; DomainNet: random crop + flip), drawn from generators fixed by (seed, epoch)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare(x: torch.Tensor, size: int, device="cpu", mean=IMAGENET_MEAN, std=IMAGENET_STD,
            channels_last: bool = False, centre_crop: bool = False) -> torch.Tensor:
    """A batch of uint8 images as the network's float input (the evaluation transform): moved to ``device``, scaled to
    [0, 1], with ``centre_crop`` cut to its central ``size``×``size`` pixels when larger (BREEDS: images stored at 256,
    then CenterCrop 224), resized to ``size``×``size`` (bilinear, antialiased when shrinking; skipped when already that
    size) and normalised per channel. The official CIFAR→STL transform is the resize to 224 alone
    (``configs/adaptation/datasets_cifar_stl.yaml``)."""
    x = x.to(device, non_blocking=True).float().div_(255.0)
    h, w = x.shape[-2:]
    if centre_crop and min(h, w) > size:
        top, left = (h - size) // 2, (w - size) // 2
        x = x[..., top:top + size, left:left + size]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return _normalise(x, mean, std, channels_last)


def _normalise(x: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ---- training augmentation (official configs: BREEDS RandomResizedCrop + flip, DomainNet random crop + flip) ----

AUGMENTATIONS = ("none", "random-resized-crop", "random-crop")
RRC_SCALE, RRC_RATIO, RRC_TRIES = (0.08, 1.0), (3 / 4, 4 / 3), 10


def augmentation_generator(seed: int, stream: int, epoch: int = 0) -> torch.Generator:
    """The random stream of one run's augmentation draws, fixed by (``seed``, ``stream``, ``epoch``): stream 1 is
    training (one draw per epoch, so a resumed run sees the same crops), stream 2 the LP features' augmented view."""
    state = np.random.SeedSequence((seed, stream, epoch)).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def crop_boxes(n: int, height, width, kind: str, size: int, generator: torch.Generator) -> torch.Tensor:
    """One crop per image, float64 ``(n, 5)``: ``top, left, h, w`` in pixels and a horizontal ``flip`` flag (0 or 1,
    probability 1/2). ``height`` and ``width``: the images' size, one number for all or a tensor of ``n`` (one per
    image: photographs of different shapes, :attr:`ImageSet.photo_hw`).

    ``"random-resized-crop"`` is RandomResizedCrop's rule: up to 10 tries of an area fraction uniform in (0.08, 1) and a
    log-uniform aspect ratio in (3/4, 4/3), the first box that fits kept at a uniformly random place; where none fits,
    the whole image with its aspect ratio clamped to that range, centred. ``"random-crop"`` is a ``size``×``size``
    box at a uniformly random place (DomainNet: 224 out of 256)."""
    if kind not in AUGMENTATIONS[1:]:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS[1:]}; got {kind!r}")
    g = generator
    if kind == "random-crop":
        if not np.isscalar(height) or not np.isscalar(width):
            raise ValueError("random-crop draws on the stored image: it needs one image size, not one per image")
        if size > min(height, width):
            raise ValueError(f"random-crop of {size} px needs images of at least that size; got {height}×{width}")
        top = torch.randint(0, height - size + 1, (n,), generator=g).double()
        left = torch.randint(0, width - size + 1, (n,), generator=g).double()
        h = w = torch.full((n,), float(size), dtype=torch.float64)
    else:
        height = torch.as_tensor(height, dtype=torch.float64).expand(n)
        width = torch.as_tensor(width, dtype=torch.float64).expand(n)
        area = (height * width)[:, None]
        scale = torch.empty(n, RRC_TRIES, dtype=torch.float64).uniform_(*RRC_SCALE, generator=g)
        log_ratio = torch.empty(n, RRC_TRIES, dtype=torch.float64).uniform_(*np.log(RRC_RATIO), generator=g)
        ratio = log_ratio.exp()
        ws, hs = (area * scale * ratio).sqrt().round(), (area * scale / ratio).sqrt().round()
        fits = (ws >= 1) & (ws <= width[:, None]) & (hs >= 1) & (hs <= height[:, None])
        first = fits.double().argmax(1)  # the first try that fits (0 where none does: replaced below)
        w, h = ws.gather(1, first[:, None])[:, 0], hs.gather(1, first[:, None])[:, 0]
        u = torch.rand(n, 2, dtype=torch.float64, generator=g)
        top, left = (u[:, 0] * (height - h + 1)).floor(), (u[:, 1] * (width - w + 1)).floor()
        none = ~fits.any(1)
        if none.any():  # the whole image, aspect ratio clamped, centred
            aspect = width / height
            fw = torch.where(aspect <= RRC_RATIO[1], width, (height * RRC_RATIO[1]).round())
            fh = torch.where(aspect >= RRC_RATIO[0], height, (width / RRC_RATIO[0]).round())
            w, h = torch.where(none, fw, w), torch.where(none, fh, h)
            top = torch.where(none, ((height - fh) / 2).floor(), top)
            left = torch.where(none, ((width - fw) / 2).floor(), left)
    flip = (torch.rand(n, generator=g) < 0.5).double()
    return torch.stack([top, left, h, w, flip], 1)


def centre_boxes(photo_hw: torch.Tensor, fraction: float) -> torch.Tensor:
    """The evaluation view of each photograph (no flip), float64 ``(n, 5)`` boxes in its own pixels: the central
    square whose side is ``fraction`` of the shorter side, i.e. Resize(s) + CenterCrop(``fraction``·s) (BREEDS: 224 of
    256, ``fraction`` 0.875), before :func:`onto_stored`."""
    hw = photo_hw.double()
    side = hw.min(1).values * fraction
    top, left = (hw[:, 0] - side) / 2, (hw[:, 1] - side) / 2
    return torch.stack([top, left, side, side, torch.zeros_like(side)], 1)


def onto_stored(boxes: torch.Tensor, photo_hw: torch.Tensor, stored_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes drawn in photograph pixels (:func:`crop_boxes`, :func:`centre_boxes`) as boxes on the stored copies
    (each photograph resized to ``stored_hw``, aspect ratio not kept): every edge scaled by stored / photograph size
    along its axis and rounded to a whole pixel, each box at least one pixel wide and inside the image. Cutting
    that box and resizing it to the input size is the photograph's crop at the stored copy's resolution."""
    out = boxes.clone()
    for axis, (start, length) in enumerate(((0, 2), (1, 3))):
        stored = stored_hw[axis]
        scale = stored / photo_hw[:, axis].double()
        first = (boxes[:, start] * scale).round().clamp(0, stored - 1)
        last = ((boxes[:, start] + boxes[:, length]) * scale).round()
        last = torch.maximum(last.clamp(max=stored), first + 1)
        out[:, start], out[:, length] = first, last - first
    return out


def augment(x: torch.Tensor, boxes: torch.Tensor, size: int, device="cpu", mean=IMAGENET_MEAN, std=IMAGENET_STD,
            channels_last: bool = False) -> torch.Tensor:
    """A batch of uint8 images as augmented network inputs (the training transform): each image's crop box
    (:func:`crop_boxes`, integer pixels) cut out and resized to ``size``×``size`` as torchvision's ``resized_crop``
    does (bilinear, antialiased when shrinking), mirrored where its flag is set, on ``device``, then normalised. A
    ``size`` crop is copied exactly."""
    x = x.to(device, non_blocking=True)
    out = torch.empty(len(x), 3, size, size, device=x.device)
    for i, (top, left, h, w, flip) in enumerate(boxes.long().tolist()):
        crop = x[i:i + 1, :, top:top + h, left:left + w].float().div_(255.0)
        if (h, w) != (size, size):
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i] = crop[0].flip(-1) if flip else crop[0]
    return _normalise(out, mean, std, channels_last)

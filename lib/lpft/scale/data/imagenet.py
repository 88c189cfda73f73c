"""The paper's ImageNet experiment: ImageNet-1k (ILSVRC-2012) → ImageNetV2, ImageNet-R, ImageNet-Sketch, ImageNet-A.

The ImageNet runs of the LP-FT paper's final version (Kumar et al., ICLR 2022), as its official code
(``configs/adaptation/datasets_imagenet.yaml``, ``scripts/run_adaptation_experiments.py``) sets them up: CLIP ViT-B/16
is fine-tuned on ImageNet train and evaluated on ImageNet val (ID test; the official config also early-stops on it, so
ImageNet val doubles as ID-val) and on four OOD test sets: ImageNetV2 (matched-frequency), ImageNet-R,
ImageNet-Sketch and ImageNet-A. R and A hold only 200 of the 1000 classes; they are scored by the argmax over those
200 classes' logits (:attr:`ImageSet.classes <lpft.scale.imagedata.ImageSet>`, :func:`lpft.task.predict`). Every set
is transformed as the official config's test transform: bicubic resize of the shorter side to 224, then a centre crop
of 224 (no augmentation).

Under one ``data_root`` (any folder may be a symbolic link)::

    data_root/imagenet/{train,val}/<wnid>/*.JPEG                # the ImageNet folder of the BREEDS loaders
    data_root/imagenetv2-matched-frequency-format-val/<c>/*.jpeg  # c = class index 0..999, not a wnid
    data_root/imagenet-r/<wnid>/*.jpg                           # 200 wnids
    data_root/imagenet-sketch/<wnid>/*.JPEG                     # the archive's sketch/ folder, renamed; 1000 wnids
    data_root/imagenet-a/<wnid>/*.jpg                           # 200 wnids

Class index = position of the wnid among the sorted class folders of ``imagenet/train`` (torchvision's ImageFolder
order, :func:`wnids`); ImageNetV2's folders are class indices already (parsed as integers: folder "10" is class 10,
though it sorts before "2"). Missing folders raise :class:`~lpft.scale.imagedata.MissingData` naming them and how to obtain
them; folders that do not fit the layout raise :class:`~lpft.scale.imagedata.MalformedData`.

ImageNet train at 224 px is ~193 GB as uint8, more than memory holds: with ``cache_dir`` each set is decoded once, in
chunks, into a ``.npy`` file that later loads memory-mapped (:func:`load_set`). :func:`write_synthetic` writes
small generated images in this layout for the tests and the ``quick`` profile.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lpft.scale import imagedata
from lpft.scale.data.files import HOW_TO_GET_IMAGENET, IMAGE_SUFFIXES, LAYOUT, absent, decode_set, save_jpegs
from lpft.scale.imagedata import ImageSet, MalformedData, MissingData
from lpft.task import Task

IMAGENET_OOD = ("ImageNetV2", "ImageNet-R", "ImageNet-Sketch", "ImageNet-A")  # the paper's column names
OOD_FOLDERS = {"ImageNetV2": "imagenetv2-matched-frequency-format-val", "ImageNet-R": "imagenet-r",
               "ImageNet-Sketch": "imagenet-sketch", "ImageNet-A": "imagenet-a"}
RESIZE = "shorter-bicubic"  # datasets_imagenet.yaml: bicubic Resize(224) + CenterCrop(224), for every set
HOW_TO_GET = {
    "ImageNet": HOW_TO_GET_IMAGENET,
    "ImageNetV2": "download imagenetv2-matched-frequency.tar.gz (linked from github.com/modestyachts/ImageNetV2) and "
                  "unpack it into data_root (it creates imagenetv2-matched-frequency-format-val/)",
    "ImageNet-R": "download imagenet-r.tar (linked from github.com/hendrycks/imagenet-r) and unpack it into data_root "
                  "(it creates imagenet-r/)",
    "ImageNet-Sketch": "download the ImageNet-Sketch archive (linked from github.com/HaohanWang/ImageNet-Sketch), "
                       "unpack it and rename (or symlink) its sketch/ folder to data_root/imagenet-sketch",
    "ImageNet-A": "download imagenet-a.tar (linked from github.com/hendrycks/natural-adv-examples) and unpack it into "
                  "data_root (it creates imagenet-a/)",
}
PARTIAL = ("ImageNet-R", "ImageNet-A")  # 200 of the 1000 classes: scored by the argmax over those


def _folder(path: Path, dataset: str) -> Path:
    if not path.is_dir():
        raise MissingData(f"{dataset}: expected the folder {path} (not found). To obtain it, {HOW_TO_GET[dataset]}.")
    return path


def _subfolders(path: Path, dataset: str) -> list[str]:
    """Names of the class folders in ``path`` (files such as the archives' README.txt are ignored)."""
    return sorted(p.name for p in _folder(path, dataset).iterdir() if p.is_dir())


def wnids(data_root) -> list[str]:
    """The ImageNet classes in index order: the sorted class folders of ``imagenet/train`` (ImageFolder's order; 1000
    in the real data). ``imagenet/val`` must hold the same wnids."""
    imagenet = Path(data_root) / LAYOUT["imagenet"]
    train, val = _subfolders(imagenet / "train", "ImageNet"), _subfolders(imagenet / "val", "ImageNet")
    if not train:
        raise MalformedData(f"ImageNet: {imagenet / 'train'} holds no class folders")
    if set(train) != set(val):
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        raise MalformedData(f"ImageNet: {imagenet / 'train'} and {imagenet / 'val'} must hold the same class folders; "
                            f"only in train: {only_train[:5]} ({len(only_train)}), only in val: {only_val[:5]} "
                            f"({len(only_val)})")
    return train


# ---- listing the files of one set ---------------------------------------------------------------------------------

Listing = tuple[list[Path], list[int]]  # image paths and their labels, in loading order


def _listing(folder: Path, dataset: str, label_of: Callable[[str], int]) -> Listing:
    """Every image under ``folder/<class folder>/``, ordered by label, then by file name."""
    paths, labels = [], []
    for label, name in sorted((label_of(name), name) for name in _subfolders(folder, dataset)):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MalformedData(f"{dataset}: {folder / name} holds no image files")
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _by_wnid(index: dict[str, int], folder: Path, dataset: str) -> Callable[[str], int]:
    def label_of(name: str) -> int:
        if name not in index:
            raise MalformedData(f"{dataset}: {folder / name} is not named by a wnid of ImageNet train "
                                f"({len(index)} classes)")
        return index[name]
    return label_of


def _by_index(n_classes: int, folder: Path) -> Callable[[str], int]:
    def label_of(name: str) -> int:
        if not (name.isascii() and name.isdigit()) or int(name) >= n_classes:
            raise MalformedData(f"ImageNetV2: {folder / name} must be named by a class index 0..{n_classes - 1}")
        return int(name)
    return label_of


def _cap(listing: Listing, n: int | None) -> Listing:
    """A fixed random ``n`` of the files (the same ones :meth:`ImageSet.subset` with seed 0 keeps,
    :func:`lpft.scale.imagedata.subset_index`), chosen before anything is decoded."""
    paths, labels = listing
    keep = imagedata.subset_index(len(paths), n)
    if keep is None:
        return listing
    return [paths[i] for i in keep.tolist()], [labels[i] for i in keep.tolist()]


# ---- decoding ------------------------------------------------------------------------------------------------------

def load_set(data_root, name: str, listing: Listing, classes: tuple | None, size: int, *, cache_dir=None,
             workers: int = 8) -> ImageSet:
    """The images of ``listing`` with the paper's ImageNet transform (:data:`RESIZE`), in memory or, with
    ``cache_dir``, decoded once into a memory-mapped disk cache (:func:`lpft.scale.data.decode_set`)."""
    paths, labels = listing
    return decode_set(data_root, name, paths, labels, size, resize=RESIZE, classes=classes,
                                cache_dir=cache_dir, workers=workers)


# ---- the task -----------------------------------------------------------------------------------------------------

def _check_ood(ood) -> None:
    unknown = [o for o in ood if o not in OOD_FOLDERS]
    if unknown:
        raise ValueError(f"unknown ImageNet OOD set(s) {unknown}; known: {list(IMAGENET_OOD)}")


def imagenet_task(data_root, *, size: int = 224, ood=IMAGENET_OOD, cache_dir=None, workers: int = 8,
                  max_train: int | None = None, max_eval: int | None = None) -> Task:
    """ImageNet → ``ood`` (as the official ``datasets_imagenet.yaml``): ID train = ImageNet train, ID test =
    ImageNet val, which is also the ID-val set (``val is test_id``: the official config early-stops on ImageNet val), OOD = the named sets of :data:`IMAGENET_OOD`.
    ImageNet-R and -A carry ``classes`` (the indices of their wnids) and are scored over those only. All images get the
    paper's bicubic resize of the shorter side to ``size`` and a centre crop. ``max_train`` / ``max_eval`` keep fixed
    random subsets (the same as :meth:`Task.capped`), chosen before decoding; ``cache_dir``: see
    :func:`load_set`. Every folder is listed before any image is decoded, so a missing one fails at once."""
    _check_ood(ood)
    root = Path(data_root)
    classes = wnids(root)
    index = {w: i for i, w in enumerate(classes)}
    imagenet = root / LAYOUT["imagenet"]
    listings = {"ImageNet train": _listing(imagenet / "train", "ImageNet", _by_wnid(index, imagenet / "train",
                                                                                   "ImageNet")),
                "ImageNet val": _listing(imagenet / "val", "ImageNet", _by_wnid(index, imagenet / "val", "ImageNet"))}
    valid = {}
    for name in ood:
        folder = root / OOD_FOLDERS[name]
        label_of = _by_index(len(classes), folder) if name == "ImageNetV2" else _by_wnid(index, folder, name)
        listings[name] = _listing(folder, name, label_of)
        valid[name] = tuple(sorted(set(listings[name][1]))) if name in PARTIAL else None

    def load(name: str, cap: int | None) -> ImageSet:
        return load_set(root, name, _cap(listings[name], cap), valid.get(name), size, cache_dir=cache_dir,
                        workers=workers)

    train, test = load("ImageNet train", max_train), load("ImageNet val", max_eval)
    ood_sets = {name: load(name, max_eval) for name in ood}
    sizes = {"ID train (ImageNet train)": len(train), "ID-val (ImageNet val, the ID test set)": len(test),
             "ID test (ImageNet val)": len(test), **{f"OOD ({k})": len(v) for k, v in ood_sets.items()}}
    return Task("imagenet", train, test, test, ood_sets, n_classes=len(classes), sizes=sizes)


def load(data_root, *, n_val: int | None = None, image_size: int = 224, load_size: int | None = None, cache_dir=None,
         max_train: int | None = None, max_eval: int | None = None) -> Task:
    """:func:`imagenet_task` at ``image_size`` (ImageNet's images are stored at the input size: ``load_size`` is not
    used); ImageNet val is ID-val, so ``n_val`` must be None."""
    if n_val is not None:
        raise ValueError("imagenet uses ImageNet val as ID-val (the paper's early stopping): n_val must be None")
    return imagenet_task(data_root, size=image_size, cache_dir=cache_dir, max_train=max_train, max_eval=max_eval)


def missing(data_root, ood=IMAGENET_OOD) -> list[str]:
    """One line per kind of absent input (empty when all are there): the ImageNet train / val folders, ImageNet val
    class folders of train's wnids, and each OOD set's folder."""
    _check_ood(ood)
    root = Path(data_root)
    imagenet = root / LAYOUT["imagenet"]
    splits = [imagenet / s for s in ("train", "val") if not (imagenet / s).is_dir()]
    lines = absent("ImageNet folders", splits, HOW_TO_GET["ImageNet"])
    if not splits:
        val = [imagenet / "val" / w for w in _subfolders(imagenet / "train", "ImageNet")]
        lines += absent("ImageNet val class folders", [f for f in val if not f.is_dir()],
                                   HOW_TO_GET["ImageNet"])
    for name in ood:
        folder = root / OOD_FOLDERS[name]
        lines += absent(f"{name} folder", [folder] if not folder.is_dir() else [], HOW_TO_GET[name])
    return lines


# ---- small generated data in the real layout ----------------------------------------------------------------------

def _ood_style(images: np.ndarray, name: str) -> np.ndarray:
    """The generated OOD sets' looks: ImageNet-R posterised (renditions), ImageNet-Sketch grey and high-contrast,
    ImageNetV2 and ImageNet-A as drawn (their noise and colour cast are added when drawing)."""
    x = images.astype(np.float64)
    if name == "ImageNet-R":
        x = (x // 64) * 64 + 32
    elif name == "ImageNet-Sketch":
        x = (np.repeat(x.mean(1, keepdims=True), 3, axis=1) - 128) * 1.6 + 128
    return np.clip(x, 0, 255).round().astype(np.uint8)


def write_synthetic(data_root, *, n_classes: int = 6, n_train: int = 30, n_val: int = 10, n_ood: int = 10,
                             size: tuple[int, int] = (44, 52), seed: int = 0) -> dict:
    """An ImageNet-like task in the real layout under ``data_root`` (JPEG files; see the module docstring): made-up
    wnids ``n08000000, n08000001, ...`` (sorted = index order), each class a random coloured wave pattern
    (:func:`lpft.scale.imagedata.pattern_images`). OOD sets redraw the classes in their own look: ImageNetV2 with a little
    more noise, ImageNet-R posterised, ImageNet-Sketch grey and high-contrast, ImageNet-A with a colour cast and heavy
    noise. ImageNet-R keeps the classes ``k % 3 != 2`` and ImageNet-A those ``k % 3 != 0`` (two different two-thirds,
    as the real sets keep two different 200 of 1000); V2 and Sketch keep all. Images are ``size`` (height, width), not
    square. Deterministic in ``seed``. Returns the image counts."""
    if n_classes < 3:
        raise ValueError(f"n_classes must be at least 3 (R and A keep different proper subsets); got {n_classes}")
    root = Path(data_root)
    rng = np.random.default_rng(seed)
    protos = imagedata.pattern_prototypes(n_classes, rng)
    names = [f"n{8_000_000 + k:08d}" for k in range(n_classes)]
    imagenet = root / LAYOUT["imagenet"]
    serial = 0
    for k, wnid in enumerate(names):
        train = imagedata.pattern_images(n_train, size, np.full(n_train, k), rng, protos, 0.0, 0.08)
        save_jpegs(train, [imagenet / "train" / wnid / f"{wnid}_{i}.JPEG" for i in range(n_train)])
        val = imagedata.pattern_images(n_val, size, np.full(n_val, k), rng, protos, 0.0, 0.08)
        save_jpegs(val, [imagenet / "val" / wnid / f"ILSVRC2012_val_{serial + i + 1:08d}.JPEG"
                                    for i in range(n_val)])
        serial += n_val
    kept = {"ImageNetV2": range(n_classes), "ImageNet-R": [k for k in range(n_classes) if k % 3 != 2],
            "ImageNet-Sketch": range(n_classes), "ImageNet-A": [k for k in range(n_classes) if k % 3 != 0]}
    cast = {"ImageNetV2": 0.0, "ImageNet-R": 0.0, "ImageNet-Sketch": 0.0, "ImageNet-A": rng.uniform(-0.2, 0.2, 3)}
    noise = {"ImageNetV2": 0.12, "ImageNet-R": 0.06, "ImageNet-Sketch": 0.06, "ImageNet-A": 0.25}
    suffix = {"ImageNetV2": "jpeg", "ImageNet-R": "jpg", "ImageNet-Sketch": "JPEG", "ImageNet-A": "jpg"}
    for name in IMAGENET_OOD:
        folder = root / OOD_FOLDERS[name]
        for k in kept[name]:
            images = imagedata.pattern_images(n_ood, size, np.full(n_ood, k), rng, protos, cast[name], noise[name])
            sub = str(k) if name == "ImageNetV2" else names[k]
            save_jpegs(_ood_style(images, name),
                                  [folder / sub / f"{name.lower()}_{k}_{i}.{suffix[name]}" for i in range(n_ood)])
        if name in PARTIAL:  # the real archives carry a README next to the class folders
            (folder / "README.txt").write_text(f"generated stand-in for {name}: {len(kept[name])} classes\n")
    return {"train": n_classes * n_train, "val": n_classes * n_val,
            **{name: len(kept[name]) * n_ood for name in IMAGENET_OOD}}

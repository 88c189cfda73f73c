"""The ImageNet → V2 / R / Sketch / A loader reads generated JPEGs written in the real folder layout."""
import hashlib
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lpft.scale import imagedata
from lpft.scale.data import files, imagenet
from lpft.scale.imagedata import MalformedData, MissingData
from lpft.task import Task, predict

torch.set_num_threads(1)
SIZE = 24


def generated(root: Path, **kw) -> dict:
    return imagenet.write_synthetic(root, **({"n_train": 4, "n_val": 2, "n_ood": 2} | kw))


def expected(root: Path, folder: str, label_of) -> list[tuple[int, Path]]:
    """(label, path) of every image under root/folder, found independently of the loader, in the loader's order."""
    items = [(label_of(d.name), f) for d in (root / folder).iterdir() if d.is_dir() for f in d.iterdir()]
    return sorted(items, key=lambda item: (item[0], item[1].name))


def folder_of(name: str) -> str:
    return {"train": "imagenet/train", "val": "imagenet/val", **imagenet.OOD_FOLDERS}[name]


def test_generated_layout_round_trips(tmp_path):
    counts = generated(tmp_path)
    task = imagenet.imagenet_task(tmp_path, size=SIZE, workers=2)
    names = imagenet.wnids(tmp_path)
    assert names == sorted(names) and len(names) == 6 == task.n_classes and task.name == "imagenet"
    assert task.val is task.test_id and list(task.ood) == list(imagenet.IMAGENET_OOD)
    assert list(task.sizes.values()) == [counts["train"], counts["val"], counts["val"],
                                         *(counts[k] for k in imagenet.IMAGENET_OOD)]
    assert list(task.sizes)[:3] == ["ID train (ImageNet train)", "ID-val (ImageNet val, the ID test set)",
                                    "ID test (ImageNet val)"]
    index = {w: i for i, w in enumerate(names)}
    sets = {"train": task.train, "val": task.test_id, **task.ood}
    for name, data in sets.items():
        label_of = int if name == "ImageNetV2" else index.__getitem__
        items = expected(tmp_path, folder_of(name), label_of)
        assert data.y.tolist() == [label for label, _ in items], name
        assert data.x.shape == (len(items), 3, SIZE, SIZE) and data.x.dtype == torch.uint8
        for i in (0, len(items) // 2, -1):  # each image sits next to its own label, transformed as the paper's
            assert np.array_equal(data.x[i].numpy(), files.load_image(items[i][1], SIZE, "shorter-bicubic"))
    # caps keep the same fixed subsets as Task.capped, chosen before decoding
    capped = imagenet.imagenet_task(tmp_path, size=SIZE, workers=2, max_train=7, max_eval=3)
    reference = task.capped(7, 3)
    assert capped.sizes == reference.sizes and capped.val is capped.test_id
    for a, b in zip((capped.train, capped.test_id, *capped.ood.values()),
                    (reference.train, reference.test_id, *reference.ood.values())):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.classes == b.classes
    # the Sketch folder may be a symbolic link to the archive's sketch/ folder
    os.rename(tmp_path / "imagenet-sketch", tmp_path / "sketch")
    os.symlink(tmp_path / "sketch", tmp_path / "imagenet-sketch")
    linked = imagenet.imagenet_task(tmp_path, size=SIZE, ood=("ImageNet-Sketch",), workers=2)
    assert torch.equal(linked.ood["ImageNet-Sketch"].x, task.ood["ImageNet-Sketch"].x)


def test_v2_folder_names_are_class_indices(tmp_path):
    generated(tmp_path, n_classes=12, n_train=1, n_val=1, n_ood=2)
    v2 = imagenet.imagenet_task(tmp_path, size=SIZE, ood=("ImageNetV2",), workers=2).ood["ImageNetV2"]
    folders = sorted(p.name for p in (tmp_path / imagenet.OOD_FOLDERS["ImageNetV2"]).iterdir())
    assert folders.index("10") == 2  # as strings "10" and "11" sort before "2": parsing must not use that order
    assert v2.y.tolist() == [c for c in range(12) for _ in range(2)] and v2.classes is None
    for folder in ("2", "10", "11"):
        for path in sorted((tmp_path / imagenet.OOD_FOLDERS["ImageNetV2"] / folder).iterdir()):
            image = files.load_image(path, SIZE, "shorter-bicubic")
            matches = [i for i in range(len(v2)) if np.array_equal(v2.x[i].numpy(), image)]
            assert matches and all(v2.y[i] == int(folder) for i in matches)


def test_r_and_a_are_scored_over_their_own_classes(tmp_path):
    generated(tmp_path)
    task = imagenet.imagenet_task(tmp_path, size=SIZE, workers=2)
    index = {w: i for i, w in enumerate(imagenet.wnids(tmp_path))}
    for name in ("ImageNet-R", "ImageNet-A"):
        present = sorted(index[d.name] for d in (tmp_path / imagenet.OOD_FOLDERS[name]).iterdir() if d.is_dir())
        assert task.ood[name].classes == tuple(present) and 0 < len(present) < task.n_classes
    assert task.ood["ImageNet-R"].classes != task.ood["ImageNet-A"].classes
    assert task.ood["ImageNet-Sketch"].classes is None and task.ood["ImageNetV2"].classes is None
    assert task.train.classes is None and task.test_id.classes is None
    r = task.ood["ImageNet-R"].classes
    outside, inside = (c for c in range(task.n_classes) if c not in r), r[-1]
    logits = torch.zeros(2, task.n_classes)
    logits[:, next(outside)] = 5.0  # the global argmax: not an ImageNet-R class
    logits[0, inside] = 3.0         # the best of R's classes
    logits[1, r[0]] = -1.0          # all of R's classes equal but one: the first remaining one wins
    assert predict(logits, r).tolist() == [inside, r[1]]
    assert predict(logits, None).tolist() == [logits[0].argmax().item()] * 2


def test_missing_and_malformed_folders(tmp_path):
    generated(tmp_path, n_train=1, n_val=1, n_ood=1)
    assert imagenet.missing(tmp_path) == []
    with pytest.raises(ValueError, match="ImageNet-C.*ImageNet-Sketch"):
        imagenet.imagenet_task(tmp_path, size=SIZE, ood=("ImageNet-C",))
    train = re.escape(str(tmp_path / "nowhere" / "imagenet" / "train"))
    with pytest.raises(MissingData, match=f"{train}.*To obtain it.*ILSVRC"):
        imagenet.imagenet_task(tmp_path / "nowhere", size=SIZE)
    lines = imagenet.missing(tmp_path / "nowhere")
    assert len(lines) == 5 and "imagenet/train" in lines[0] and "imagenet/val" in lines[0]
    assert [name in line for name, line in zip(imagenet.IMAGENET_OOD, lines[1:])] == [True] * 4

    # an OOD folder and an ImageNet val class folder go missing: missing_imagenet names exactly those two
    shutil.rmtree(tmp_path / "imagenet-a")
    wnid = imagenet.wnids(tmp_path)[1]
    shutil.move(tmp_path / "imagenet" / "val" / wnid, tmp_path / "aside")
    absent_val, absent_a = imagenet.missing(tmp_path)
    assert "ImageNet val class folders: 1 missing" in absent_val and wnid in absent_val
    assert "imagenet-a" in absent_a and "natural-adv-examples" in absent_a
    assert imagenet.missing(tmp_path, ood=("ImageNet-R",)) == [absent_val]
    with pytest.raises(MalformedData, match=f"only in train: \\['{wnid}'\\]"):
        imagenet.imagenet_task(tmp_path, size=SIZE)
    shutil.move(tmp_path / "aside", tmp_path / "imagenet" / "val" / wnid)
    with pytest.raises(MissingData, match="imagenet-a.*natural-adv-examples"):
        imagenet.imagenet_task(tmp_path, size=SIZE)
    assert len(imagenet.imagenet_task(tmp_path, size=SIZE, ood=imagenet.IMAGENET_OOD[:3]).ood) == 3

    ood = ("ImageNet-R", "ImageNetV2")
    stray = tmp_path / "imagenet-r" / "n09999999"
    shutil.copytree(next((tmp_path / "imagenet-r").glob("n*")), stray)
    with pytest.raises(MalformedData, match="n09999999"):
        imagenet.imagenet_task(tmp_path, size=SIZE, ood=ood)
    shutil.rmtree(stray)
    v2 = tmp_path / imagenet.OOD_FOLDERS["ImageNetV2"]
    for bad in ("abc", "6", "-1"):  # 6 classes: index 6 is out of range
        shutil.copytree(v2 / "0", v2 / bad)
        with pytest.raises(MalformedData, match=f"ImageNetV2: .*/{bad} must be named by a class index 0..5"):
            imagenet.imagenet_task(tmp_path, size=SIZE, ood=ood)
        shutil.rmtree(v2 / bad)
    for f in (v2 / "3").iterdir():
        f.unlink()
    with pytest.raises(MalformedData, match="holds no image files"):
        imagenet.imagenet_task(tmp_path, size=SIZE, ood=ood)


def sets(task: Task) -> dict:
    return {"train": task.train, "val": task.test_id, **task.ood}


def test_disk_cache_is_read_back_and_rebuilt_when_incomplete(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    generated(root)
    in_ram = sets(imagenet.imagenet_task(root, size=SIZE, workers=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from torch about a read-only array
        first = sets(imagenet.imagenet_task(root, size=SIZE, workers=2, cache_dir=cache))
    for name, data in first.items():
        assert torch.equal(data.x, in_ram[name].x) and torch.equal(data.y, in_ram[name].y)
        assert data.digest == in_ram[name].digest == files.content_digest(data.x.numpy(), data.y.numpy())
        assert data.classes == in_ram[name].classes
    assert len({d.digest for d in first.values()}) == len(first)
    cached = sorted(p.name for p in cache.iterdir())
    stems = sorted({Path(f).stem for f in cached})
    assert cached == sorted(f"{s}.{ext}" for s in stems for ext in ("json", "npy")) and len(stems) == len(first)

    # writing into a loaded set changes neither the cache file nor a later load (copy-on-write mapping)
    first["train"].x[0] = 0
    assert torch.equal(imagenet.imagenet_task(root, size=SIZE, ood=(), cache_dir=cache).train.x, in_ram["train"].x)

    # an .npy without its sidecar is an interrupted write: decoded again
    (train_npy,) = cache.glob("imagenet-train-*.npy")
    np.save(train_npy, np.zeros((3, 3, SIZE, SIZE), dtype=np.uint8))
    train_npy.with_suffix(".json").unlink()
    again = imagenet.imagenet_task(root, size=SIZE, ood=(), cache_dir=cache).train
    assert torch.equal(again.x, in_ram["train"].x) and train_npy.with_suffix(".json").is_file()

    # another size is another entry; the old ones stay
    other = imagenet.imagenet_task(root, size=SIZE - 4, ood=(), cache_dir=cache)
    assert other.train.x.shape[-1] == SIZE - 4 and len(list(cache.glob("*.npy"))) == len(first) + 2

    # every source image corrupted (same file sizes, so the same cache keys): only the cache can answer now
    for path in root.rglob("*"):
        if path.suffix.lower() in files.IMAGE_SUFFIXES:
            path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(MalformedData, match="not a readable image"):
        imagenet.imagenet_task(root, size=SIZE, ood=(), workers=2)
    second = sets(imagenet.imagenet_task(root, size=SIZE, workers=2, cache_dir=cache))
    for name, data in second.items():
        assert torch.equal(data.x, in_ram[name].x) and torch.equal(data.y, in_ram[name].y), name
        assert data.digest == in_ram[name].digest and data.classes == in_ram[name].classes
    # a decode that fails half-way (a new size, unreadable sources) leaves no temporary or partial file behind
    before = sorted(cache.iterdir())
    with pytest.raises(MalformedData, match="not a readable image"):
        imagenet.imagenet_task(root, size=SIZE - 2, ood=(), cache_dir=cache)
    assert sorted(cache.iterdir()) == before and all(p.suffix in (".npy", ".json") for p in before)


def test_content_digest_is_sha256_of_the_image_bytes_then_the_int64_labels():
    x = np.random.default_rng(0).integers(0, 256, (2 * files.CHUNK + 5, 3, 2, 2), dtype=np.uint8)
    y = np.arange(len(x)) % 7
    whole = hashlib.sha256(x.tobytes() + y.astype(np.int64).tobytes()).hexdigest()
    assert files.content_digest(x, y) == whole == files.content_digest(x, y.astype(np.int32))
    y[-1] += 1
    assert files.content_digest(x, y) != whole


def test_synthetic_data_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert generated(a) == generated(b)
    written = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and len(written) > 70
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in written)
    generated(tmp_path / "c", seed=1)
    assert (tmp_path / "c" / written[-1]).read_bytes() != (a / written[-1]).read_bytes()

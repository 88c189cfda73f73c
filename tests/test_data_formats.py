"""The dataset formats of lpft.scale.data: BREEDS (split file + ImageNet folder), DomainNet (file lists) and FMoW
(WILDS tables) read tiny image files written here."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpft.scale.data import breeds, domainnet, files, fmow
from lpft.scale.imagedata import MalformedData, MissingData


def write_image(path, colour, size=(20, 12), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8)).save(path, format=fmt)


def test_load_image_resizes_the_short_side_and_centre_crops(tmp_path):
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, 10:20] = 255  # a white vertical band in the middle third
    Image.fromarray(img).save(tmp_path / "a.png")
    x = files.load_image(tmp_path / "a.png", 8)
    assert x.shape == (3, 8, 8) and x.dtype == np.uint8
    assert x[:, :, 2:6].min() > 200  # the crop is the centre of the wide image, which is the band
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(MalformedData, match="b.png"):
        files.load_image(tmp_path / "b.png", 8)


def test_breeds_task_from_split_file_and_imagenet_folder(tmp_path):
    imagenet = tmp_path / "imagenet"
    for split, n in (("train", 3), ("val", 2)):
        for k, wnid in enumerate(["n01", "n02", "n03", "n04"]):
            for i in range(n):
                write_image(imagenet / split / wnid / f"{wnid}_{i}.JPEG", 60 * k, fmt="JPEG")
    split = {"names": ["a", "b"], "source": [["n01"], ["n03"]], "target": [["n02"], ["n04"]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    task = breeds.breeds_task(imagenet, tmp_path / "split.json", name="tiny", size=8, workers=2)
    assert (len(task.train), len(task.test_id), len(task.ood["tiny target"])) == (6, 4, 4)
    assert task.n_classes == 2 and task.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert task.val is task.test_id
    # training photographs are stored whole with their (height, width); evaluation images are the centre square
    assert task.train.photo_hw.tolist() == [[12, 20]] * 6 and task.test_id.photo_hw is None
    assert task.train.x.shape[-2:] == task.test_id.x.shape[-2:] == (8, 8)
    held = breeds.breeds_task(imagenet, tmp_path / "split.json", name="tiny", size=8, n_val=2, workers=2)
    assert len(held.train) == 4 and len(held.val) == 2 and held.val.photo_hw.tolist() == [[12, 20]] * 2
    (tmp_path / "bad.json").write_text(json.dumps({**split, "target": [["n01"], ["n04"]]}))
    with pytest.raises(MalformedData, match="both source and target"):
        breeds.breeds_task(imagenet, tmp_path / "bad.json", name="x", size=8)
    (tmp_path / "missing.json").write_text(json.dumps({**split, "source": [["n09"], ["n03"]]}))
    with pytest.raises(MissingData, match="n09"):
        breeds.breeds_task(imagenet, tmp_path / "missing.json", name="x", size=8)
    with pytest.raises(MissingData, match="robustness"):
        breeds.breeds_task(imagenet, tmp_path / "nope.json", name="x", size=8)


def test_domainnet_task_from_file_lists(tmp_path):
    root, lists = tmp_path / "domainnet", tmp_path / "lists"
    lists.mkdir()
    for domain in ("sketch", "real", "painting", "clipart"):
        for split in ("train", "test"):
            lines = []
            for label in (5, 17):  # original DomainNet label ids: mapped to 0 and 1
                rel = f"{domain}/c{label}/{split}_{label}.jpg"
                write_image(root / rel, label * 10, fmt="JPEG")
                lines.append(f"{rel} {label}")
            (lists / f"{domain}_{split}_mini.txt").write_text("\n".join(lines) + "\n")
    task = domainnet.domainnet_task(root, lists, size=8, workers=2)
    assert task.n_classes == 2 and set(task.ood) == {"real", "painting", "clipart"}
    assert task.train.y.tolist() == [0, 1] and task.ood["clipart"].y.tolist() == [0, 1]
    (lists / "real_test_mini.txt").write_text("real/c5/test_5.jpg 99\n")
    with pytest.raises(MalformedData, match="99"):
        domainnet.domainnet_task(root, lists, size=8)
    (lists / "real_test_mini.txt").write_text("real/c5/absent.jpg 5\n")
    with pytest.raises(MissingData, match="absent.jpg"):
        domainnet.domainnet_task(root, lists, size=8)
    (lists / "real_test_mini.txt").write_text("just-a-path\n")
    with pytest.raises(MalformedData, match="line 1"):
        domainnet.domainnet_task(root, lists, size=8)
    (lists / "real_test_mini.txt").unlink()
    with pytest.raises(MissingData, match="SENTRY"):
        domainnet.domainnet_task(root, lists, size=8)


def test_generated_breeds_tasks_load_through_the_real_layout(tmp_path):
    counts = breeds.write_synthetic(tmp_path, "living17", n_train=3, n_val=2)
    breeds.write_synthetic(tmp_path, "entity30", n_train=3, n_val=2)
    assert breeds.missing(tmp_path, "living17") == [] == breeds.missing(tmp_path, "entity30")
    imagenet, split_file = breeds.breeds_paths(tmp_path, "entity30")
    split = breeds.read_breeds_split(split_file)
    assert len(split["names"]) == 6 and all(len(s) == 2 for s in split["source"] + split["target"])
    task = breeds.breeds_task(imagenet, split_file, name="Entity-30", size=40, workers=2)
    assert task.train.x.shape == (6 * 2 * 3, 3, 40, 40) and task.n_classes == 6
    height, width = task.train.photo_hw.T  # photographs of many shapes, within 25% of 44 × 52
    assert len(set(zip(height.tolist(), width.tolist()))) > 20
    assert 33 <= height.min() and height.max() <= 55 and 39 <= width.min() and width.max() <= 65
    assert len(task.ood["Entity-30 target"]) == 6 * 2 * 2 and task.val is task.test_id
    living = breeds.breeds_task(*breeds.breeds_paths(tmp_path, "living17"), name="Living-17", size=40)
    assert len(living.train) == counts["train"] == 4 * 2 * 3
    assert not torch.equal(living.train.x[:6], task.train.x[:6])  # each task draws its own images
    # the ImageNet class folders a split names are checked, train for the source, val for both
    shutil.rmtree(imagenet / "val" / split["target"][1][0])
    (missing,) = breeds.missing(tmp_path, "entity30")
    assert "1 missing" in missing and split["target"][1][0] in missing and "data_root/imagenet" in missing
    assert "scripts/breeds_splits.py" in breeds.missing(tmp_path / "elsewhere", "living17")[0]
    with pytest.raises(ValueError, match="living17"):
        breeds.breeds_paths(tmp_path, "living-17")


def test_generated_domainnet_loads_at_the_papers_two_sizes(tmp_path):
    domainnet.write_synthetic(tmp_path, n_train=4, n_test=3)
    assert domainnet.missing(tmp_path) == []
    task = domainnet.domainnet_task(*domainnet.domainnet_paths(tmp_path), size=16, train_size=20, workers=2)
    assert task.train.x.shape == (4 * 4, 3, 20, 20) and task.test_id.x.shape == (4 * 3, 3, 16, 16)
    assert task.n_classes == 4 and sorted(task.ood) == ["clipart", "painting", "real"]
    assert task.train.y.tolist() == [k for k in range(4) for _ in range(4)]  # labels 3, 11, 24, 37 -> 0..3
    sketch = task.train.x.float()
    assert (sketch[:, 0] - sketch[:, 1]).abs().mean() < 3  # sketches are grey (JPEG adds a little colour)
    (domainnet.domainnet_paths(tmp_path)[1] / "clipart_test_mini.txt").unlink()
    shutil.rmtree(tmp_path / "domainnet" / "painting")
    lists, folders = domainnet.missing(tmp_path)
    assert "clipart_test_mini.txt" in lists and "SENTRY" in lists and "painting" in folders


def test_whole_resize_keeps_the_whole_photograph_and_its_size(tmp_path):
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, :6] = 255  # a white band at the left edge, which a centre crop would cut away
    Image.fromarray(img).save(tmp_path / "a.png")
    x = files.load_image(tmp_path / "a.png", 8, resize="whole")
    assert x.shape == (3, 8, 8) and x[:, :, 0].min() > 200 and x[:, :, -1].max() < 50
    assert files.photo_size(tmp_path / "a.png") == (10, 30)
    data = files.load_images([tmp_path / "a.png"] * 2, [0, 1], 8, workers=1, resize="whole")
    assert data.photo_hw.tolist() == [[10, 30]] * 2
    assert files.load_images([tmp_path / "a.png"], [0], 8, workers=1).photo_hw is None


def test_square_resize_is_bicubic_to_the_exact_size(tmp_path):
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, :10] = 255  # the left third white
    Image.fromarray(img).save(tmp_path / "a.png")
    x = files.load_image(tmp_path / "a.png", 12, resize="square")
    assert x.shape == (3, 12, 12) and x[:, :, :3].min() > 200 and x[:, :, -3:].max() < 30  # not cropped: squeezed
    with pytest.raises(ValueError, match="resize"):
        files.load_image(tmp_path / "a.png", 12, resize="stretch")


def test_breeds_split_maps_imagenet_indices_to_wnids(tmp_path):
    wnids = [f"n{i:08d}" for i in range(1000)]
    split = breeds.breeds_split(["dog", "cat"], [[0, 5], [7]], [[1], [999, 2]], wnids)
    assert split == {"names": ["dog", "cat"], "source": [["n00000000", "n00000005"], ["n00000007"]],
                     "target": [["n00000001"], ["n00000999", "n00000002"]]}
    with pytest.raises(MalformedData, match="1000"):
        breeds.breeds_split(["dog"], [[0]], [[1]], wnids[:10])


def test_the_breeds_script_writes_the_split_files(tmp_path):
    """scripts/breeds_splits.py against a stand-in for the robustness library (same call and return shape)."""
    fake = tmp_path / "fake" / "robustness" / "tools"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "breeds_helpers.py").write_text(
        "def _make(n):\n"
        "    def make(info_dir, split=None):\n"
        "        assert split == 'rand'\n"
        "        return list(range(n)), ([[2 * i] for i in range(n)], [[2 * i + 1] for i in range(n)]), "
        "{i: f'super {i}' for i in range(n)}\n"
        "    return make\n"
        "make_living17, make_entity30 = _make(17), _make(30)\n")
    imagenet = tmp_path / "imagenet"
    for i in range(1000):
        (imagenet / "train" / f"n{i:08d}").mkdir(parents=True)
    script = Path(__file__).resolve().parents[1] / "scripts" / "breeds_splits.py"
    proc = subprocess.run([sys.executable, str(script), "--info-dir", str(tmp_path), "--imagenet", str(imagenet),
                           "--out", str(tmp_path / "breeds")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "fake")}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    split = breeds.read_breeds_split(tmp_path / "breeds" / "entity30.json")
    assert len(split["names"]) == 30 and split["names"][3] == "super 3"
    assert split["source"][3] == ["n00000006"] and split["target"][3] == ["n00000007"]
    assert len(breeds.read_breeds_split(tmp_path / "breeds" / "living17.json")["names"]) == 17


def test_fmow_task_reads_wilds_tables_by_region_and_year(tmp_path):
    counts = fmow.write_synthetic(tmp_path, n_train=3, n_val=2, size=20)
    root = fmow.fmow_path(tmp_path)
    meta = fmow.read_fmow_metadata(root)
    assert meta["timestamp"].str.contains(r"\.5Z").any() and not meta["timestamp"].str.contains(r"\.5Z").all()
    assert len(meta) == counts["images"] and set(meta["region"]) == {"Americas", "Africa", "Europe", "Other"}
    task = fmow.fmow_task(root, size=16, workers=2)
    assert task.n_classes == 62 and task.val is task.test_id
    assert (len(task.train), len(task.test_id), len(task.ood["Africa"])) == (counts["ID train"], counts["ID test"],
                                                                             counts["OOD"])
    # the rows each set holds, by WILDS's rules: training split before 2013; "val" of 2013-2015 (WILDS 1.x)
    ams = meta[(meta["region"] == "Americas")]
    train_rows = ams[(ams["split"] == "train") & (ams["year"] < 2013)]
    val_rows = ams[(ams["split"] == "val") & (ams["year"] >= 2013) & (ams["year"] < 2016)]
    assert task.train.y.tolist() == train_rows["label"].tolist()
    assert task.test_id.y.tolist() == val_rows["label"].tolist()
    first = files.load_image(root / "images" / f"rgb_img_{val_rows['row'].iloc[0]}.png", 16, resize="square")
    assert np.array_equal(task.test_id.x[0].numpy(), first)  # image file named by the metadata row
    absent = set(task.test_id.y.tolist()) - set(task.train.y.tolist())
    assert absent == {fmow.FMOW_CATEGORIES.index("shipyard")}  # a class the Americas' training images lack
    older = fmow.fmow_task(root, size=16, val="id", n_val=2, workers=2)  # WILDS 2's "val": before 2013
    assert len(older.test_id) == len(ams[(ams["split"] == "val") & (ams["year"] < 2013)])
    assert len(older.val) == 2 and len(older.train) == counts["ID train"] - 2
    with pytest.raises(ValueError, match="region"):
        fmow.fmow_task(root, ood_region="Antarctica")
    with pytest.raises(ValueError, match="val must be"):
        fmow.fmow_task(root, val="test")


def test_fmow_errors_name_the_file_and_how_to_get_it(tmp_path):
    assert len(fmow.missing(tmp_path)) == 1 and "fmow_v1.1" in fmow.missing(tmp_path)[0]
    with pytest.raises(MissingData, match="rgb_metadata.csv.*wilds"):
        fmow.fmow_task(fmow.fmow_path(tmp_path))
    fmow.write_synthetic(tmp_path, n_train=2, n_val=2, size=12)
    root = fmow.fmow_path(tmp_path)
    assert fmow.missing(tmp_path) == []
    (root / "images" / "rgb_img_0.png").unlink()
    with pytest.raises(MissingData, match="rgb_img_0.png"):
        fmow.fmow_task(root, size=12)
    meta = (root / "rgb_metadata.csv").read_text()
    (root / "rgb_metadata.csv").write_text(meta.replace("airport", "spaceport"))
    with pytest.raises(MalformedData, match="spaceport"):
        fmow.fmow_task(root, size=12)
    (root / "rgb_metadata.csv").write_text(meta.replace("country_code", "country"))
    with pytest.raises(MalformedData, match="country_code"):
        fmow.fmow_task(root, size=12)
    (root / "rgb_metadata.csv").write_text(meta.replace("T10:0", "at 10:0"))
    with pytest.raises(MalformedData, match="ISO 8601"):
        fmow.fmow_task(root, size=12)


def test_breeds_domainnet_and_fmow_decode_into_the_disk_cache_as_into_ram(tmp_path):
    breeds.write_synthetic(tmp_path, "living17", n_classes=2, n_sub=1, n_train=3, n_val=2)
    domainnet.write_synthetic(tmp_path, labels=(3, 11), n_train=3, n_test=2)
    fmow.write_synthetic(tmp_path, n_train=2, n_val=2, size=12)
    cache = tmp_path / "cache"

    def tasks(cache_dir):
        return [breeds.breeds_task(*breeds.breeds_paths(tmp_path, "living17"), name="Living-17", size=16,
                                      cache_dir=cache_dir),
                domainnet.domainnet_task(*domainnet.domainnet_paths(tmp_path), size=16, train_size=20,
                                         cache_dir=cache_dir),
                fmow.fmow_task(fmow.fmow_path(tmp_path), size=12, cache_dir=cache_dir)]

    for ram, cached in zip(tasks(None), tasks(cache)):
        for a, b in zip((ram.train, ram.test_id, *ram.ood.values()), (cached.train, cached.test_id,
                                                                      *cached.ood.values())):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.digest == b.digest is not None
            hw = None if b.photo_hw is None else b.photo_hw.numpy()
            assert b.digest == files.content_digest(b.x.numpy(), b.y.numpy(), hw)
            assert (a.photo_hw is None) == (b.photo_hw is None) and (hw is None or torch.equal(a.photo_hw, b.photo_hw))
    assert ram.train.photo_hw is None  # only BREEDS' training photographs are stored whole (FMoW: last in the loop)
    names = sorted(p.stem.rsplit("-", 1)[0] for p in cache.glob("*.json"))
    assert names == ["domainnet-clipart-test", "domainnet-painting-test", "domainnet-real-test",
                     "domainnet-sketch-test", "domainnet-sketch-train", "fmow-train-americas", "fmow-val-africa",
                     "fmow-val-americas", "living-17-train", "living-17-val-source", "living-17-val-target"]
    assert len(list(cache.glob("*.npy"))) == len(names) and not list(cache.glob("*.tmp"))

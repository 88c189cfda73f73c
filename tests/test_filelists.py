"""BREEDS (split file + ImageNet folder) and DomainNet (file lists) loaders read tiny image files written here."""
import json

import numpy as np
import pytest
from PIL import Image

from lpft import filelists
from lpft.imagedata import MalformedData, MissingData


def write_image(path, colour, size=(20, 12), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8)).save(path, format=fmt)


def test_load_image_resizes_the_short_side_and_centre_crops(tmp_path):
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, 10:20] = 255  # a white vertical band in the middle third
    Image.fromarray(img).save(tmp_path / "a.png")
    x = filelists.load_image(tmp_path / "a.png", 8)
    assert x.shape == (3, 8, 8) and x.dtype == np.uint8
    assert x[:, :, 2:6].min() > 200  # the crop is the centre of the wide image, which is the band
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(MalformedData, match="b.png"):
        filelists.load_image(tmp_path / "b.png", 8)


def test_breeds_task_from_split_file_and_imagenet_folder(tmp_path):
    imagenet = tmp_path / "imagenet"
    for split, n in (("train", 3), ("val", 2)):
        for k, wnid in enumerate(["n01", "n02", "n03", "n04"]):
            for i in range(n):
                write_image(imagenet / split / wnid / f"{wnid}_{i}.JPEG", 60 * k, fmt="JPEG")
    split = {"names": ["a", "b"], "source": [["n01"], ["n03"]], "target": [["n02"], ["n04"]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    task = filelists.breeds_task(imagenet, tmp_path / "split.json", name="tiny", size=8, workers=2)
    assert (len(task.train), len(task.test_id), len(task.ood["tiny target"])) == (6, 4, 4)
    assert task.n_classes == 2 and task.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert task.val is task.test_id
    held = filelists.breeds_task(imagenet, tmp_path / "split.json", name="tiny", size=8, n_val=2, workers=2)
    assert len(held.train) == 4 and len(held.val) == 2
    (tmp_path / "bad.json").write_text(json.dumps({**split, "target": [["n01"], ["n04"]]}))
    with pytest.raises(MalformedData, match="both source and target"):
        filelists.breeds_task(imagenet, tmp_path / "bad.json", name="x", size=8)
    (tmp_path / "missing.json").write_text(json.dumps({**split, "source": [["n09"], ["n03"]]}))
    with pytest.raises(MissingData, match="n09"):
        filelists.breeds_task(imagenet, tmp_path / "missing.json", name="x", size=8)
    with pytest.raises(MissingData, match="robustness"):
        filelists.breeds_task(imagenet, tmp_path / "nope.json", name="x", size=8)


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
    task = filelists.domainnet_task(root, lists, size=8, workers=2)
    assert task.n_classes == 2 and set(task.ood) == {"real", "painting", "clipart"}
    assert task.train.y.tolist() == [0, 1] and task.ood["clipart"].y.tolist() == [0, 1]
    (lists / "real_test_mini.txt").write_text("real/c5/test_5.jpg 99\n")
    with pytest.raises(MalformedData, match="99"):
        filelists.domainnet_task(root, lists, size=8)
    (lists / "real_test_mini.txt").write_text("real/c5/absent.jpg 5\n")
    with pytest.raises(MissingData, match="absent.jpg"):
        filelists.domainnet_task(root, lists, size=8)
    (lists / "real_test_mini.txt").write_text("just-a-path\n")
    with pytest.raises(MalformedData, match="line 1"):
        filelists.domainnet_task(root, lists, size=8)
    (lists / "real_test_mini.txt").unlink()
    with pytest.raises(MissingData, match="SENTRY"):
        filelists.domainnet_task(root, lists, size=8)

"""Loaders of CIFAR-10, STL-10 and CIFAR-10.1 read the published file formats, built here byte by byte from the
formats' descriptions (not with the library's own writers), and refuse missing or malformed files with a useful
message."""
import pickle

import numpy as np
import pytest
import torch

from lpft.scale import imagedata, transforms
from lpft.scale.data import cifar
from lpft.task import Task


def _pattern(n, size, seed=0):
    """Images whose rows, columns and channels all differ, so any transposition shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def _cifar_batch(images, labels):
    # CIFAR-10's description: each row of 'data' is 3072 bytes, the 1024 red values (row-major), then green, then blue
    rows = np.stack([np.concatenate([img[c].reshape(-1) for c in range(3)]) for img in images])
    return pickle.dumps({b"batch_label": b"x", b"labels": list(map(int, labels)), b"data": rows,
                         b"filenames": [b"f.png"] * len(labels)}, protocol=2)


def test_cifar10_reads_the_python_batches_in_order(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = _pattern(10, 32), np.arange(10) % 10
    for i in range(5):
        (folder / f"data_batch_{i + 1}").write_bytes(_cifar_batch(images[2 * i:2 * i + 2], labels[2 * i:2 * i + 2]))
    (folder / "test_batch").write_bytes(_cifar_batch(images[:3], labels[:3]))
    x, y = cifar.load_cifar10(tmp_path, "train")
    assert x.dtype == torch.uint8 and x.shape == (10, 3, 32, 32)
    assert np.array_equal(x.numpy(), images) and y.tolist() == labels.tolist()
    xt, yt = cifar.load_cifar10(tmp_path, "test")
    assert np.array_equal(xt.numpy(), images[:3]) and yt.tolist() == [0, 1, 2]


def test_cifar10_missing_file_names_it_and_how_to_get_it(tmp_path):
    with pytest.raises(imagedata.MissingData) as err:
        cifar.load_cifar10(tmp_path, "test")
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in msg and "cifar-10-python.tar.gz" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_cifar10_malformed_batches_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    bad = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)
    (folder / "test_batch").write_bytes(bad)
    with pytest.raises(imagedata.MalformedData, match="3072"):
        cifar.load_cifar10(tmp_path, "test")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(imagedata.MalformedData, match="test_batch"):
        cifar.load_cifar10(tmp_path, "test")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_cifar10_batch_files_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    with pytest.raises(imagedata.MalformedData, match="refusing"):
        cifar.load_cifar10(tmp_path, "test")
    assert not marker.exists()


def _write_stl(folder, split, images, labels):
    # STL-10's description: per image the red, green, blue channels, each stored column-major; labels 1..10 as bytes
    raw = np.concatenate([img[c].reshape(-1, order="F") for img in images for c in range(3)])
    (folder / f"{split}_X.bin").write_bytes(raw.astype(np.uint8).tobytes())
    (folder / f"{split}_y.bin").write_bytes(np.asarray(labels, np.uint8).tobytes())


def test_stl10_orientation_monkey_dropped_labels_mapped(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = _pattern(10, 96)
    labels = np.arange(1, 11)  # airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck
    _write_stl(folder, "test", images, labels)
    x, y = cifar.load_stl10(tmp_path, "test")
    keep = labels != 8
    assert np.array_equal(x.numpy(), images[keep])
    names = [cifar.CIFAR10_CLASSES[i] for i in y.tolist()]
    assert names == ["airplane", "bird", "automobile", "cat", "deer", "dog", "horse", "ship", "truck"]
    assert 6 not in y.tolist()  # no STL image is a frog
    x_all, y_all = cifar.load_stl10(tmp_path, "test", drop_monkey=False)
    assert len(x_all) == 10 and y_all.tolist() == list(range(10))


def test_stl10_malformed_and_missing(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "test_X.bin").write_bytes(b"\0" * (3 * 96 * 96 * 2 + 5))
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(imagedata.MalformedData, match="bytes"):
        cifar.load_stl10(tmp_path, "test")
    (folder / "test_X.bin").write_bytes(b"\0" * (3 * 96 * 96 * 2))
    (folder / "test_y.bin").write_bytes(bytes([1, 11]))
    with pytest.raises(imagedata.MalformedData, match="1-10"):
        cifar.load_stl10(tmp_path, "test")
    with pytest.raises(imagedata.MissingData, match="stl10_binary.tar.gz"):
        cifar.load_stl10(tmp_path, "train")


def test_cifar101_reads_nhwc_npy(tmp_path):
    folder = tmp_path / "cifar10.1"
    folder.mkdir()
    images = _pattern(4, 32)
    np.save(folder / "cifar10.1_v6_data.npy", images.transpose(0, 2, 3, 1))
    np.save(folder / "cifar10.1_v6_labels.npy", np.array([3, 1, 4, 1]))
    x, y = cifar.load_cifar101(tmp_path)
    assert np.array_equal(x.numpy(), images) and y.tolist() == [3, 1, 4, 1] and y.dtype == torch.int64


def test_cifar101_malformed_and_missing(tmp_path):
    with pytest.raises(imagedata.MissingData, match="CIFAR-10.1"):
        cifar.load_cifar101(tmp_path)
    folder = tmp_path / "cifar10.1"
    folder.mkdir()
    np.save(folder / "cifar10.1_v6_data.npy", np.zeros((2, 3, 32, 32), np.uint8))  # NCHW: wrong layout
    np.save(folder / "cifar10.1_v6_labels.npy", np.array([0, 1]))
    with pytest.raises(imagedata.MalformedData, match="32, 32, 3"):
        cifar.load_cifar101(tmp_path)
    np.save(folder / "cifar10.1_v6_data.npy", np.array([object()] * 2), allow_pickle=True)
    with pytest.raises(imagedata.MalformedData):
        cifar.load_cifar101(tmp_path)


def test_writers_round_trip_and_the_task_split(tmp_path):
    sizes = cifar.write_synthetic_root(tmp_path, n_train=60, n_test=20, n_stl=30, n_c101=10, seed=1)
    assert sizes["CIFAR-10 train"] == 60
    task = cifar.cifar_task(tmp_path, n_val=12)
    assert len(task.train) == 48 and len(task.val) == 12 and len(task.test_id) == 20
    assert set(task.ood) == {"STL-10", "CIFAR-10.1"} and task.ood["STL-10"].x.shape[-1] == 96
    raw = np.fromfile(tmp_path / "stl10_binary" / "test_y.bin", dtype=np.uint8)
    assert (raw == 8).any() and len(task.ood["STL-10"]) == (raw != 8).sum()  # the generated monkeys are dropped
    # the val split is disjoint from train and fixed: it does not change from one call to the next
    rows = {bytes(img.numpy().tobytes()) for img in task.train.x}
    assert not any(bytes(img.numpy().tobytes()) in rows for img in task.val.x)
    again = cifar.cifar_task(tmp_path, n_val=12)
    assert torch.equal(again.val.x, task.val.x)
    small = cifar.cifar_task(tmp_path, n_val=12, max_train=10, max_eval=5)
    assert len(small.train) == 10 and len(small.test_id) == 5 and len(small.ood["CIFAR-10.1"]) == 5
    # the paper's protocol: every training image is trained on and the ID test set is ID-val
    paper = cifar.cifar_task(tmp_path)
    assert len(paper.train) == 60 and paper.val is paper.test_id and len(paper.val) == 20
    assert "ID-val (the ID test set, as the paper)" in paper.sizes
    with pytest.raises(ValueError, match="n_val must be None"):
        cifar.cifar_task(tmp_path, n_val=0)


def test_prepare_scales_resizes_and_normalises():
    x = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = transforms.prepare(x, 32)
    expected = (1 - torch.tensor(transforms.IMAGENET_MEAN)) / torch.tensor(transforms.IMAGENET_STD)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out[0, :, 5, 5], expected)
    assert transforms.prepare(x, 224).shape == (2, 3, 224, 224)
    assert transforms.prepare(x, 16, channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_missing_files_lists_every_absent_file_per_dataset(tmp_path):
    cifar.write_synthetic_root(tmp_path, n_train=20, n_test=10, n_stl=10, n_c101=10)
    assert cifar.missing_files(tmp_path) == []
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "cifar10.1" / "cifar10.1_v6_labels.npy").unlink()
    lines = cifar.missing_files(tmp_path)
    assert len(lines) == 2 and "data_batch_3" in lines[0] and "cifar-10-python.tar.gz" in lines[0]
    assert "cifar10.1_v6_labels.npy" in lines[1]


def test_random_crop_boxes_copy_the_pixels_exactly_and_flip_half_of_them():
    x = torch.randint(0, 256, (64, 3, 20, 18), dtype=torch.uint8)
    boxes = transforms.crop_boxes(64, 20, 18, "random-crop", 16, transforms.augmentation_generator(3, 1, 0))
    out = transforms.augment(x, boxes, 16, mean=(0, 0, 0), std=(1, 1, 1))
    for i, (top, left, h, w, flip) in enumerate(boxes.long().tolist()):
        assert (h, w) == (16, 16) and 0 <= top <= 4 and 0 <= left <= 2
        ref = x[i, :, top:top + 16, left:left + 16].float() / 255
        assert torch.allclose(out[i], ref.flip(-1) if flip else ref, atol=1e-5)
    assert 0 < boxes[:, 4].sum() < 64  # both flipped and unflipped crops occur
    with pytest.raises(ValueError, match="at least"):
        transforms.crop_boxes(4, 10, 10, "random-crop", 16, transforms.augmentation_generator(0, 1))
    with pytest.raises(ValueError, match="augmentation"):
        transforms.crop_boxes(4, 10, 10, "cutout", 8, transforms.augmentation_generator(0, 1))


def test_a_resized_crop_is_torchvisions_antialiased_resize_of_the_box():
    x = torch.zeros(2, 3, 40, 40, dtype=torch.uint8)
    x[:, :, ::2, ::2] = x[:, :, 1::2, 1::2] = 255  # a one-pixel checkerboard: aliases badly when shrunk naively
    boxes = torch.tensor([[4.0, 2.0, 32.0, 36.0, 0.0], [0.0, 0.0, 40.0, 40.0, 1.0]])
    out = transforms.augment(x, boxes, 8, mean=(0, 0, 0), std=(1, 1, 1))
    ref = torch.nn.functional.interpolate(x[:1, :, 4:36, 2:38].float() / 255, size=(8, 8), mode="bilinear",
                                          align_corners=False, antialias=True)
    assert torch.allclose(out[:1], ref, atol=1e-6)
    assert (out - 0.5).abs().max() < 0.05  # averaged to grey, as a photograph's fine texture should be
    naive = torch.nn.functional.interpolate(x[1:].float() / 255, size=(8, 8), mode="bilinear", align_corners=False)
    assert (naive - 0.5).abs().max() > 0.4  # without antialiasing the pattern aliases to black or white


def test_random_resized_crop_boxes_follow_the_rule():
    n, height, width = 20000, 40, 30
    boxes = transforms.crop_boxes(n, height, width, "random-resized-crop", 16, transforms.augmentation_generator(0, 1))
    top, left, h, w, flip = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    area, aspect = h * w / (height * width), w / h
    assert area.min() >= 0.08 * 0.9 and area.max() <= 1  # rounding to whole pixels moves the fraction a little
    assert aspect.min() >= 3 / 4 * 0.9 and aspect.max() <= 4 / 3 * 1.1
    assert abs(flip.mean().item() - 0.5) < 0.02
    # the same (seed, stream, epoch) gives the same draws; another epoch other draws
    again = transforms.crop_boxes(n, height, width, "random-resized-crop", 16, transforms.augmentation_generator(0, 1))
    other = transforms.crop_boxes(n, height, width, "random-resized-crop", 16, transforms.augmentation_generator(0, 1, 1))
    assert torch.equal(boxes, again) and not torch.equal(boxes, other)
    # a very wide image: no try fits within 10, so the whole image is used, its aspect ratio clamped to 4/3, centred
    wide = transforms.crop_boxes(50, 2, 200, "random-resized-crop", 2, transforms.augmentation_generator(0, 1))
    assert (wide[:, 2] == 2).all() and (wide[:, 3] == 3).all() and (wide[:, 1] == (200 - 3) // 2).all()


def test_per_image_photograph_sizes_draw_by_the_same_rule():
    n = 4000
    g = lambda: transforms.augmentation_generator(5, 1)  # noqa: E731
    same = transforms.crop_boxes(n, torch.full((n,), 40), torch.full((n,), 30), "random-resized-crop", 16, g())
    assert torch.equal(same, transforms.crop_boxes(n, 40, 30, "random-resized-crop", 16, g()))
    rng = torch.Generator().manual_seed(0)
    height = torch.randint(100, 400, (n,), generator=rng)
    width = (height * torch.empty(n).uniform_(0.5, 2, generator=rng)).round().long()  # portraits to 2:1 landscapes
    width[:50] = 30 * height[:50]  # panoramas: no try fits, the whole width clamped to 4/3 of the height is used
    top, left, h, w, _ = transforms.crop_boxes(n, height, width, "random-resized-crop", 16, g()).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    area, aspect = (h * w / (height * width))[50:], (w / h)[50:]
    assert area.min() >= 0.08 * 0.9 and area.max() <= 1 and aspect.min() >= 0.7 and aspect.max() <= 1.4
    assert torch.equal(h[:50], height[:50].double()) and torch.equal(w[:50], (height[:50] * 4 / 3).round().double())
    with pytest.raises(ValueError, match="one image size"):
        transforms.crop_boxes(2, torch.tensor([20, 30]), 20, "random-crop", 16, g())


def _smooth_photo(height, width):
    """A smooth colour photograph as uint8 (1, 3, height, width): resampling it at other resolutions changes little."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    channels = [torch.sin(3 * xx + 2 * yy), torch.cos(4 * yy - xx), torch.sin(2 * xx * yy + 1)]
    return (torch.stack(channels)[None] * 100 + 128).round().to(torch.uint8)


def test_a_crop_of_the_stored_whole_photograph_is_the_photographs_own_crop():
    photo = _smooth_photo(90, 150)  # 5:3, stored squashed to 48×48 as BREEDS training photographs are
    stored = torch.nn.functional.interpolate(photo.float(), size=(48, 48), mode="bilinear", antialias=True)
    stored = stored.round().to(torch.uint8).expand(64, -1, -1, -1)
    hw = torch.tensor([[90, 150]] * 64)
    boxes = transforms.crop_boxes(64, 90, 150, "random-resized-crop", 24, transforms.augmentation_generator(0, 1))
    mapped = transforms.onto_stored(boxes, hw, (48, 48))
    assert (mapped[:, 0] >= 0).all() and (mapped[:, 0] + mapped[:, 2] <= 48).all() and (mapped[:, 2:4] >= 1).all()
    assert torch.equal(mapped[:, 4], boxes[:, 4])  # flips are kept
    ours = transforms.augment(stored, mapped, 24, mean=(0, 0, 0), std=(1, 1, 1))
    theirs = transforms.augment(photo.expand(64, -1, -1, -1), boxes, 24, mean=(0, 0, 0), std=(1, 1, 1))
    assert (ours - theirs).abs().mean() < 0.01  # the same view, at the stored copy's resolution
    # what the stored square used to give: crops drawn on it as if it were the photograph, a different view
    square = transforms.augment(stored, transforms.crop_boxes(64, 48, 48, "random-resized-crop", 24,
                                                            transforms.augmentation_generator(0, 1)),
                               24, mean=(0, 0, 0), std=(1, 1, 1))
    assert (square - theirs).abs().mean() > 5 * (ours - theirs).abs().mean()
    whole = transforms.onto_stored(torch.tensor([[0.0, 0, 90, 150, 0], [89, 149, 1, 1, 0]]), hw[:2], (48, 48))
    assert whole.tolist() == [[0, 0, 48, 48, 0], [47, 47, 1, 1, 0]]  # edges stay inside, at least one pixel


def test_the_evaluation_view_of_a_whole_photograph_is_its_centre_crop():
    from lpft.scale.finetune import Runtime

    photo = _smooth_photo(80, 120)
    stored = torch.nn.functional.interpolate(photo.float(), size=(32, 32), mode="bilinear", antialias=True)
    data = imagedata.ImageSet(stored.round().to(torch.uint8), torch.zeros(1, dtype=torch.int64),
                              photo_hw=[[80, 120]])
    rt = Runtime(image_size=28, centre_crop=True, mean=(0, 0, 0), std=(1, 1, 1))
    box = rt.views(data)
    assert box.tolist() == [[2.0, 7.0, 28.0, 18.0, 0.0]]  # the central 70×70 of 80×120 (from 5, 25), on 32×32
    # Resize(32) + CenterCrop(28) of the photograph, as the evaluation sets are stored and cut
    shorter = torch.nn.functional.interpolate(photo.float(), size=(32, 48), mode="bilinear", antialias=True)
    reference = transforms.prepare(shorter.round().to(torch.uint8)[..., 8:40], 28, mean=(0, 0, 0), std=(1, 1, 1),
                                  centre_crop=True)
    assert (rt.augmented(data.x, box) - reference).abs().mean() < 0.01
    assert torch.equal(rt.crops(data, transforms.augmentation_generator(0, 1)), box)  # no augmentation: the view
    assert rt.views(imagedata.ImageSet(data.x, data.y)) is None  # a set stored as its own view has none
    with pytest.raises(ValueError, match="whole photographs"):
        Runtime(augment="random-crop", image_size=28).crops(data, transforms.augmentation_generator(0, 1))
    with pytest.raises(ValueError, match="photo_hw"):
        imagedata.ImageSet(data.x, data.y, photo_hw=[[80, 0]])


def test_resized_crops_sample_the_box_and_centre_crop_is_the_middle():
    x = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
    x[..., 8:24, 8:24] = 255  # a white square in the middle
    box = torch.tensor([[8.0, 8.0, 16.0, 16.0, 0.0]])
    assert torch.allclose(transforms.augment(x, box, 8, mean=(0, 0, 0), std=(1, 1, 1)), torch.ones(1, 3, 8, 8))
    centre = transforms.prepare(x, 16, mean=(0, 0, 0), std=(1, 1, 1), centre_crop=True)
    assert torch.equal(centre, torch.ones(1, 3, 16, 16))
    assert transforms.prepare(x, 64, centre_crop=True).shape == (1, 3, 64, 64)  # smaller than size: only resized


def test_capped_task_keeps_an_id_val_that_is_the_id_test_set():
    def images(n, value):
        return imagedata.ImageSet(torch.full((n, 3, 4, 4), value, dtype=torch.uint8), torch.arange(n) % 2)

    test = images(10, 1)
    task = Task("t", images(20, 0), test, test, {"o": images(12, 2)}, 2,
                sizes={"train": 20, "val": 10, "test": 10, "ood": 12})
    small = task.capped(5, 4)
    assert small.val is small.test_id and small.sizes == {"train": 5, "val": 4, "test": 4, "ood": 4}
    assert task.capped(None, None) is task

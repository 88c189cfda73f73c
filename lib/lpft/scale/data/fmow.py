"""FMoW geo-shift (WILDS FMoW v1.1, 62 classes of satellite images) from WILDS's metadata tables.

The dataset of the LP-FT paper (Kumar et al., ICLR 2022; Section 4 of its ICLR submission): :func:`fmow_task` reads
WILDS's ``rgb_metadata.csv`` (one row per image ``images/rgb_img_<row>.png``: its split, category, country code and
timestamp) and ``country_code_mapping.csv`` (country code → region). As in the official code
(github.com/AnanyaKumar/transfer_learning, ``configs/adaptation/datasets_fmow.yaml``: region 3, the Americas, for
training; region 2, Africa, among its test sets), ID train is WILDS's training split (images before 2013) from the
Americas, ID test the Americas images of WILDS's "val" split and OOD the African images of the same split. (The
submission's text says "North America" for ID and "Africa and Europe" for OOD; ``ood_region="Europe"`` gives the
other set.) Under ``data_root``: ``fmow_v1.1/`` (:data:`lpft.scale.data.files.LAYOUT`). :func:`load`,
:func:`missing` and :func:`write_synthetic` (a small generated copy in this layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lpft.scale import imagedata
from lpft.scale.data.files import LAYOUT, absent, decode_set
from lpft.scale.imagedata import ImageSet, MalformedData, MissingData
from lpft.task import Task

HOW_TO_GET = {"FMoW": "download WILDS FMoW v1.1 (fmow_v1.1.tar.gz, e.g. with the wilds package: python -c \"import wilds; "
            "wilds.get_dataset('fmow', version='1.1', root_dir='/path/to/data_root', download=True)\", or from "
            "https://worksheets.codalab.org/bundles/0xaec91eb7c9d548ebb15e1b5e60f966ab) and unpack it so that "
            "data_root/fmow_v1.1/ holds rgb_metadata.csv, country_code_mapping.csv and images/"}


FMOW_CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture", "archaeological_site", "barn",
    "border_checkpoint", "burial_site", "car_dealership", "construction_site", "crop_field", "dam", "debris_or_rubble",
    "educational_institution", "electric_substation", "factory_or_powerplant", "fire_station", "flooded_road",
    "fountain", "gas_station", "golf_course", "ground_transportation_station", "helipad", "hospital",
    "impoverished_settlement", "interchange", "lake_or_pond", "lighthouse", "military_facility",
    "multi-unit_residential", "nuclear_powerplant", "office_building", "oil_or_gas_facility", "park",
    "parking_lot_or_garage", "place_of_worship", "police_station", "port", "prison", "race_track", "railway_bridge",
    "recreational_facility", "road_bridge", "runway", "shipyard", "shopping_mall", "single-unit_residential",
    "smokestack", "solar_farm", "space_facility", "stadium", "storage_tank", "surface_mine", "swimming_pool",
    "toll_booth", "tower", "tunnel_opening", "waste_disposal", "water_treatment_facility", "wind_farm", "zoo")
# The regions in the order of the official code's region codes 0..4 (ID: Americas = 3; OOD: Africa = 2). WILDS maps
# a country code it does not know to "Other", which no task uses.
FMOW_REGIONS = ("Asia", "Europe", "Africa", "Americas", "Oceania")
# WILDS's time split: training images are from before 2013; its "val" split holds images of 2013-2015 ("val" in
# WILDS 1.x, which the official code ran with; WILDS 2 calls these "ood_val") and images before 2013 ("id_val").
FMOW_YEARS = {"train": (None, 2013), "ood": (2013, 2016), "id": (None, 2013)}
FMOW_COLUMNS = ("split", "category", "country_code", "timestamp")


def read_fmow_metadata(fmow_root):
    """WILDS FMoW's metadata, one row per image (``row``: its index, which names ``images/rgb_img_<row>.png``), with
    ``region`` from the country code, ``year`` from the timestamp and ``label`` from the category."""
    import pandas as pd

    root = Path(fmow_root)
    paths = {name: root / f"{name}.csv" for name in ("rgb_metadata", "country_code_mapping")}
    for path in paths.values():
        if not path.is_file():
            raise MissingData(f"FMoW: expected {path} (not found). To obtain it, {HOW_TO_GET['FMoW']}.")
    meta = pd.read_csv(paths["rgb_metadata"])
    codes = pd.read_csv(paths["country_code_mapping"])
    for table, path, columns in ((meta, paths["rgb_metadata"], FMOW_COLUMNS),
                                 (codes, paths["country_code_mapping"], ("alpha-3", "region"))):
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise MalformedData(f"FMoW: {path} lacks the columns {absent}")
    unknown = sorted(set(meta["category"]) - set(FMOW_CATEGORIES))
    if unknown:
        raise MalformedData(f"FMoW: rgb_metadata.csv has categories that WILDS FMoW does not: {unknown[:5]}")
    region = dict(zip(codes["alpha-3"], codes["region"]))
    meta["row"] = np.arange(len(meta))
    meta["region"] = [region.get(c, "Other") for c in meta["country_code"]]
    try:  # ISO 8601, with or without fractional seconds (the real table mixes both)
        meta["year"] = pd.to_datetime(meta["timestamp"], utc=True, format="ISO8601").dt.year
    except ValueError as e:
        raise MalformedData(f"FMoW: {paths['rgb_metadata']} has a timestamp that is not ISO 8601 ({e})") from e
    meta["label"] = [FMOW_CATEGORIES.index(c) for c in meta["category"]]
    return meta


def _fmow_rows(meta, split: str, years: tuple, region: str):
    after, before = years
    keep = (meta["split"] == split) & (meta["region"] == region) & (meta["year"] < before)
    if after is not None:
        keep &= meta["year"] >= after
    return meta[keep]


def fmow_task(fmow_root, *, id_region: str = "Americas", ood_region: str = "Africa", val: str = "ood",
              size: int = 224, n_val: int | None = None, split_seed: int = 0, cache_dir=None, workers: int = 8
              ) -> Task:
    """FMoW geo-shift (as the official ``datasets_fmow.yaml``): ID train = WILDS's training images (before 2013)
    from ``id_region``; ID test and OOD test = the ``id_region`` and ``ood_region`` images of WILDS's "val" split, whose years ``val`` chooses:
    ``"ood"`` (2013-2015: WILDS 1.x's "val", which the official code read with ``get_subset('val')``) or ``"id"``
    (before 2013: WILDS 2's default "val"). Without ``n_val`` the ID test set doubles as ID-val, as the paper's
    early stopping on Americas val; with it, ``n_val`` training images are held out. Labels index
    :data:`FMOW_CATEGORIES`; all 62 are the task's classes, whether or not the training set has them. Images
    (224×224 PNGs) are resized to ``size`` squared (bicubic; unchanged at 224). ``cache_dir``: as in
    :func:`breeds_task`."""
    for r in (id_region, ood_region):
        if r not in FMOW_REGIONS:
            raise ValueError(f"unknown FMoW region {r!r}; known: {FMOW_REGIONS}")
    if val not in ("ood", "id"):
        raise ValueError(f"val must be 'ood' (WILDS 1.x 'val', 2013-2015) or 'id' (before 2013); got {val!r}")
    root = Path(fmow_root)
    meta = read_fmow_metadata(root)

    def load(rows, what: str) -> ImageSet:
        if not len(rows):
            raise MalformedData(f"FMoW: rgb_metadata.csv has no images for {what}")
        paths = [root / "images" / f"rgb_img_{r}.png" for r in rows["row"]]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise MissingData(f"FMoW: {len(absent)} images of {what} are missing, e.g. {absent[0]}. To obtain them, "
                              f"{HOW_TO_GET['FMoW']}.")
        return decode_set(root, f"fmow {what}", paths, rows["label"].tolist(), size, resize="square",
                          cache_dir=cache_dir, workers=workers)

    train = load(_fmow_rows(meta, "train", FMOW_YEARS["train"], id_region), f"train, {id_region}")
    test = load(_fmow_rows(meta, "val", FMOW_YEARS[val], id_region), f"val, {id_region}")
    ood = load(_fmow_rows(meta, "val", FMOW_YEARS[val], ood_region), f"val, {ood_region}")
    train, val = train.hold_out(n_val, split_seed) if n_val else (train, test)
    sizes = {f"ID train (train, {id_region})": len(train), "ID-val": len(val),
             f"ID test (val, {id_region})": len(test), f"OOD (val, {ood_region})": len(ood)}
    return Task("fmow", train, val, test, {ood_region: ood}, n_classes=len(FMOW_CATEGORIES), sizes=sizes)


def fmow_path(data_root) -> Path:
    """The WILDS FMoW folder (``fmow_v1.1``) under ``data_root``."""
    return Path(data_root) / LAYOUT["fmow"]


def load(data_root, *, n_val: int | None = None, image_size: int = 224, load_size: int | None = None, cache_dir=None,
         max_train: int | None = None, max_eval: int | None = None) -> Task:
    """FMoW geo-shift from ``data_root``: images at ``load_size`` (else ``image_size``), capped to ``max_train`` /
    ``max_eval`` images for smoke runs."""
    return fmow_task(fmow_path(data_root), size=load_size or image_size, n_val=n_val, cache_dir=cache_dir).capped(max_train, max_eval)


def missing(data_root) -> list[str]:
    """One line per kind of absent FMoW input (empty when all are there): the two tables and the image folder."""
    root = fmow_path(data_root)
    wanted = [root / "rgb_metadata.csv", root / "country_code_mapping.csv", root / "images"]
    return absent("WILDS FMoW files", [p for p in wanted if not p.exists()], HOW_TO_GET["FMoW"])


def write_synthetic(data_root, *, categories=(0, 11, 24, 45), n_train: int = 30, n_val: int = 10,
                         size: int = 40, seed: int = 0) -> dict:
    """An FMoW-like task in WILDS's layout under ``data_root``: ``fmow_v1.1/rgb_metadata.csv`` (WILDS's columns),
    ``country_code_mapping.csv`` and ``images/rgb_img_<row>.png``. Each of the ``categories`` (indices into
    :data:`FMOW_CATEGORIES`) is a random coloured wave pattern; each region adds its own colour cast (a geographic
    shift in miniature). Besides the rows the task reads (Americas and Africa; train before 2013, val 2013-2015) it
    writes rows the loader must skip: other regions, val images before 2013, test and "seq" images, and an unknown
    country code; the last category appears in val only (a class absent from ID training). Returns counts."""
    import pandas as pd
    from PIL import Image

    root = fmow_path(data_root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    protos = imagedata.pattern_prototypes(len(categories), rng)
    countries = {"Americas": "BRA", "Africa": "KEN", "Europe": "FRA", "Other": "XXX"}
    casts = {region: rng.uniform(-0.2, 0.2, 3) for region in countries}
    plan = [("train", "Americas", 2010, n_train), ("val", "Americas", 2014, n_val), ("val", "Africa", 2014, n_val),
            ("train", "Africa", 2011, 2), ("train", "Europe", 2011, 2), ("val", "Americas", 2011, 2),
            ("val", "Africa", 2012, 2),
            ("test", "Americas", 2017, 2), ("seq", "Americas", 2012, 2), ("train", "Other", 2012, 2)]
    rows = []
    for split, region, year, n in plan:
        for k, c in enumerate(categories):
            if split == "train" and k == len(categories) - 1:
                continue  # the last category is never seen in training
            images = imagedata.pattern_images(n, size, np.full(n, k), rng, protos, casts[region], 0.08)
            for img in images:
                row = len(rows)
                Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(root / "images" /
                                                                                   f"rgb_img_{row}.png", format="PNG")
                rows.append({"split": split, "img_filename": f"{FMOW_CATEGORIES[c]}_{row}_rgb.jpg",
                             "category": FMOW_CATEGORIES[c], "country_code": countries[region],
                             "timestamp": f"{year}-0{1 + row % 9}-1{row % 10}T10:0{row % 10}:00"
                                          f"{'.5' * (row % 2)}Z",  # with and without fractional seconds
                             "lat": round(float(rng.uniform(-40, 50)), 4), "lon": round(float(rng.uniform(-80, 40)), 4)})
    pd.DataFrame(rows).to_csv(root / "rgb_metadata.csv", index=False)
    pd.DataFrame({"name": ["Brazil", "Kenya", "France"], "alpha-2": ["BR", "KE", "FR"],
                  "alpha-3": ["BRA", "KEN", "FRA"], "region": ["Americas", "Africa", "Europe"]}
                 ).to_csv(root / "country_code_mapping.csv", index=False)
    return {"images": len(rows), "ID train": n_train * (len(categories) - 1), "ID test": n_val * len(categories),
            "OOD": n_val * len(categories)}

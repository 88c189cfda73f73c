"""Write the BREEDS Living-17 and Entity-30 splits as the JSON files the book's loaders read.

The splits are made by the ``robustness`` library (Santurkar et al., BREEDS), which needs the BREEDS hierarchy files
(``dataset_class_info.json``, ``class_hierarchy.txt``, ``node_names.txt`` from github.com/MadryLab/BREEDS-Benchmarks,
folder ``imagenet_class_hierarchy/modified``). Run it once, in any environment that has ``robustness`` installed (it
is not a dependency of this project), pointing at the hierarchy files and your ImageNet folder::

    python scripts/breeds_splits.py --info-dir /path/to/modified --imagenet /data/imagenet --out /data/breeds

It writes ``living17.json`` and ``entity30.json`` (with the paper's settings: ``split="rand"``, the library's default
random seed; the superclass names from its label map) through :func:`lpft.scale.data.breeds.breeds_split`, which maps ImageNet class indices to wnids in the sorted
order of the class folders of ``<imagenet>/train``.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from lpft.scale.data.breeds import breeds_split  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--info-dir", required=True, type=Path, help="BREEDS hierarchy files")
    parser.add_argument("--imagenet", required=True, type=Path, help="ImageNet folder with train/<wnid>/")
    parser.add_argument("--out", required=True, type=Path, help="where to write living17.json and entity30.json")
    args = parser.parse_args()
    from robustness.tools.breeds_helpers import make_entity30, make_living17

    wnids = sorted(p.name for p in (args.imagenet / "train").iterdir() if p.is_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in (("living17", make_living17), ("entity30", make_entity30)):
        superclasses, (source, target), label_map = make(str(args.info_dir), split="rand")
        names = [label_map[i] for i in range(len(superclasses))]
        (args.out / f"{name}.json").write_text(json.dumps(breeds_split(names, source, target, wnids), indent=1))
        print(f"wrote {args.out / f'{name}.json'}: {len(superclasses)} superclasses")
    return 0


if __name__ == "__main__":
    sys.exit(main())

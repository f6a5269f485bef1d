"""``ssd-split --data DIR [--val 0.2] [--test 0] [--seed 0]``: write VOC ``ImageSets/Main`` split files.

For a VOC-layout folder that has ``Annotations/`` and ``JPEGImages/`` but no ``ImageSets``:
every annotation's id is shuffled with a seeded generator and split by ratio into
``train.txt``, ``val.txt`` (and ``test.txt`` when ``--test`` > 0) plus ``trainval.txt``.
Every image is decoded once first: one that is missing, truncated or undecodable is left out
of every split, with a warning naming it (so training never stops on it). Existing split files
are kept unless ``--force``. Exits 2 with one line on bad input.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ssd.atomic import atomic_write_text
from ssd.cli import EXIT_OK, ArgumentParser, fail
from ssd.data.image_file import image_problem
from ssd.data.sample import count
from ssd.data.voc import IMAGE_SUFFIXES


def _image_file(root: Path, image_id: str) -> Path:
    """The image an annotation names (``<filename>``), else ``JPEGImages/<id>.<suffix>`` that exists."""
    try:
        node = ET.parse(root / "Annotations" / f"{image_id}.xml").find("filename")
    except ET.ParseError:
        node = None
    named = root / "JPEGImages" / (node.text.strip() if node is not None and node.text else f"{image_id}.jpg")
    if named.is_file():
        return named
    found = [root / "JPEGImages" / f"{image_id}{s}" for s in IMAGE_SUFFIXES if (root / "JPEGImages" / f"{image_id}{s}").is_file()]
    return found[0] if found else named


def bad_images(root: Path, ids: list[str]) -> dict[str, str]:
    """``{id: "file: why"}`` for every id whose image is missing, truncated or does not decode."""
    out: dict[str, str] = {}
    for image_id in ids:
        path = _image_file(root, image_id)
        problem = image_problem(path, decode=True)
        if problem is not None:
            out[image_id] = f"{path.relative_to(root) if path.is_relative_to(root) else path} ({problem})"
    return out


def split_ids(ids: list[str], val: float, test: float, seed: int) -> dict[str, list[str]]:
    """Seeded shuffle of sorted ``ids`` into train / val / test (each list sorted)."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"--val {val} and --test {test} must be fractions in [0, 1) summing below 1")
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [sorted(ids)[i] for i in order]
    n_val, n_test = round(len(ids) * val), round(len(ids) * test)
    out = {"val": shuffled[:n_val], "test": shuffled[n_val : n_val + n_test], "train": shuffled[n_val + n_test :]}
    out["trainval"] = out["train"] + out["val"]
    return {k: sorted(v) for k, v in out.items() if k != "test" or test > 0}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="ssd-split", description="Write VOC ImageSets/Main split files (train, val, test, trainval) "
                            "for a folder with Annotations/ and JPEGImages/.")
    parser.add_argument("--data", required=True, help="VOC-layout folder (Annotations/, JPEGImages/)")
    parser.add_argument("--val", type=float, default=0.2, help="fraction for val (default 0.2)")
    parser.add_argument("--test", type=float, default=0.0, help="fraction for test (default 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    parser.add_argument("--force", action="store_true", help="overwrite existing split files")
    args = parser.parse_args(argv)
    root = Path(args.data)
    try:
        ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
        if not ids:
            raise ValueError(f"no annotations in {root / 'Annotations'}; is {root} a VOC-layout folder?")
        bad = bad_images(root, ids)
        if bad:
            print(f"ssd-split: warning: left out {count(len(bad), 'image')} that cannot be used: "
                  + "; ".join(bad.values()), file=sys.stderr)
            ids = [i for i in ids if i not in bad]
            if not ids:
                raise ValueError(f"no image in {root / 'JPEGImages'} decodes; is {root} a VOC-layout folder?")
        splits = split_ids(ids, args.val, args.test, args.seed)
        folder = root / "ImageSets" / "Main"
        existing = [n for n in splits if (folder / f"{n}.txt").exists()]
        if existing and not args.force:
            raise ValueError(f"{folder / (existing[0] + '.txt')} exists; pass --force to overwrite")
        folder.mkdir(parents=True, exist_ok=True)
        for name, names in splits.items():
            atomic_write_text(folder / f"{name}.txt", "".join(f"{n}\n" for n in names))
    except (ValueError, OSError) as exc:
        return fail("ssd-split", exc)
    print(f"ssd-split: {count(len(ids), 'image')} -> " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f" in {folder}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""``ssd-split --data DIR [--val 0.2] [--test 0] [--seed 0]``: write VOC ``ImageSets/Main`` split files.

For a VOC-layout folder that has ``Annotations/`` and ``JPEGImages/`` but no ``ImageSets``:
every annotation's id is shuffled with a seeded generator and split by ratio into
``train.txt``, ``val.txt`` (and ``test.txt`` when ``--test`` > 0) plus ``trainval.txt``.
Existing split files are kept unless ``--force``. Exits 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ssd.atomic import atomic_write_text


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
    parser = argparse.ArgumentParser(prog="ssd-split", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="VOC-layout folder (Annotations/, JPEGImages/)")
    parser.add_argument("--val", type=float, default=0.2, help="fraction for val (default 0.2)")
    parser.add_argument("--test", type=float, default=0.0, help="fraction for test (default 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite existing split files")
    args = parser.parse_args(argv)
    root = Path(args.data)
    try:
        ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
        if not ids:
            raise ValueError(f"no annotations in {root / 'Annotations'}; is {root} a VOC-layout folder?")
        splits = split_ids(ids, args.val, args.test, args.seed)
        folder = root / "ImageSets" / "Main"
        existing = [n for n in splits if (folder / f"{n}.txt").exists()]
        if existing and not args.force:
            raise ValueError(f"{folder / (existing[0] + '.txt')} exists; pass --force to overwrite")
        folder.mkdir(parents=True, exist_ok=True)
        for name, names in splits.items():
            atomic_write_text(folder / f"{name}.txt", "".join(f"{n}\n" for n in names))
    except (ValueError, OSError) as exc:
        print(f"ssd-split: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"ssd-split: {len(ids)} images -> " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f" in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

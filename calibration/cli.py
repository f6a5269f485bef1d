"""``ssd-calibrate``: build a calibration set for a checkpoint from a dataset split.

    ssd-calibrate --data data/synth --split train --num 300 --seed 0 \\
        --checkpoint runs/tiny_synth/best.pt --out calibration/sets/tiny_synth

The checkpoint gives the input size and the label order; with held-out images its weights
are loaded once to say what those images can resolve (:mod:`calibration.resolution`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from calibration.build import CalibrationRequest, build_calibration_set
from calibration.sets import CalibrationError
from ssd.cli import EXIT_OK, EXIT_USAGE, ArgumentParser, fail


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="ssd-calibrate", description="Build a calibration set for a checkpoint from a dataset split.")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (VOC or COCO layout)")
    p.add_argument("--split", default="train", help="split to draw from (default train)")
    p.add_argument("--num", type=int, default=300, help="calibration images (default 300; < 100 warns)")
    p.add_argument("--holdout", type=int, default=100,
                   help="further held-out images with ground truth, for ssd-convert --max-drop (default 100; 0 for none)")
    p.add_argument("--holdout-split", default=None,
                   help="draw the held-out images from this split (one the model was not trained on, e.g. val) "
                        "instead of --split")
    p.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                   help="the ssd-convert --max-drop you plan: say whether the held-out images can resolve it and how many "
                        "it would need (the resolution is printed either way when --holdout > 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the class-stratified draw")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint whose input size and labels to use")
    p.add_argument("--format", default="auto", choices=("auto", "voc", "coco", "synth"), help="dataset layout")
    p.add_argument("--out", required=True, type=Path, help="output folder, e.g. calibration/sets/NAME")
    return p.parse_args(argv)


def _trained_on(ckpt: dict) -> tuple[str, str] | None:
    """``(dataset folder, split)`` from the checkpoint's training config, when it has one."""
    data = (ckpt.get("config") or {}).get("data") or {}
    root, split = data.get("root"), data.get("train_split")
    return (str(root), str(split)) if root and split else None


def run(args: argparse.Namespace) -> int:
    from ssd.specs import SSDSpec
    from train.checkpoint import CheckpointError, read_checkpoint

    try:
        with warnings.catch_warnings():  # torch.load warns about foreign pickles before failing on them
            warnings.simplefilter("ignore")
            ckpt = read_checkpoint(args.checkpoint)
        spec = SSDSpec.from_dict(ckpt["spec"])
    except CheckpointError as exc:
        raise CalibrationError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"checkpoint {args.checkpoint} has a malformed spec ({exc}); re-train or re-copy it") from None
    from ssd.sidecar import file_sha256

    req = CalibrationRequest(
        data=args.data,
        split=args.split,
        num=args.num,
        seed=args.seed,
        image_size=spec.image_size,
        labels=[str(x) for x in ckpt["labels"]],
        holdout=max(0, args.holdout),
        checkpoint_sha256=file_sha256(args.checkpoint),
        dataset_format=args.format,
        holdout_split=args.holdout_split,
        trained_on=_trained_on(ckpt),
    )
    calib = build_calibration_set(req, args.out)
    if req.holdout > 0 and calib.holdout is not None and len(calib.holdout) > 0:
        from calibration.resolution import holdout_resolution

        fp32, res = holdout_resolution(args.checkpoint, calib)
        print(f"ssd-calibrate: PyTorch FP32 mAP@0.5 {fp32:.2f} on the held-out images; "
              + (res.advice(args.max_drop) if args.max_drop is not None else res.advice(100.0).split(": --max-drop")[0]))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.max_drop is not None and not 0.0 < args.max_drop <= 100.0:
        return fail("ssd-calibrate", f"--max-drop is in points of mAP@0.5 (0-100, as in ssd-convert), got {args.max_drop:g}")
    try:
        return run(args)
    except CalibrationError as exc:  # every one is bad input: a dataset, checkpoint or folder that cannot be used
        return fail("ssd-calibrate", exc, EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())

"""``ssd-eval --checkpoint CKPT --data DIR --split SPLIT [--metric coco|voc07|voc]``: mAP of a checkpoint.

``coco`` (default): mAP@0.5, mAP@[.5:.95], AR@100 and per-class AP (pycocotools).
``voc07``: Pascal VOC2007 11-point AP at IoU 0.5 (the SSD paper's VOC07-test figures);
``voc``: VOC2010+ all-point AP (:mod:`ssd.voc_eval`). ``--json PATH`` also writes them.
The thresholds are :data:`ssd.postprocess.EVAL` (as in ``ssd-train`` and ``ssd-compare``).
The dataset's class names must equal the checkpoint's labels (same order).
"""

from __future__ import annotations

import argparse
import json
import sys

from ssd.cli import EXIT_OK, ArgumentParser, fail
from ssd.data.sample import DatasetError
from train.checkpoint import CheckpointError
from train.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ssd-eval", description="Evaluate an SSD checkpoint on a VOC or COCO split.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by ssd-train (last.pt / best.pt)")
    parser.add_argument("--data", required=True, help="dataset folder (VOC layout or COCO with annotations/)")
    parser.add_argument("--split", default="val", help="split name (VOC ImageSets/Main/<split>.txt, COCO instances_<split>.json)")
    parser.add_argument("--format", default="auto", choices=("auto", "voc", "coco", "synth"))
    parser.add_argument("--batch-size", type=int, default=None,
                        help="evaluation batch (default: the checkpoint's eval.batch_size, which reproduces ssd-train's figures)")
    parser.add_argument("--metric", default="coco", choices=("coco", "voc07", "voc"),
                        help="coco (pycocotools), voc07 (11-point, the SSD paper's), voc (VOC2010+ all-point)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--json", help="also write the metrics to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch

        from ssd.atomic import atomic_write_text
        from ssd.data import open_dataset
        from train.checkpoint import load_model
        from train.distributed import resolve_device
        from train.evaluate import checkpoint_eval_settings, evaluate_model

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        loaded = load_model(args.checkpoint)
        reader = open_dataset(args.data, args.split, args.format,
                              label_names=loaded.labels if args.format in ("voc", "synth", "auto") else None)
        if list(reader.label_names) != loaded.labels:
            raise DatasetError(f"dataset classes {reader.label_names} differ from the checkpoint's {loaded.labels}")
        device = resolve_device(args.device)
        model = loaded.model.to(device)
        settings = checkpoint_eval_settings(loaded.checkpoint)
        if args.batch_size:
            settings["batch_size"] = args.batch_size
        result = evaluate_model(model, reader, loaded.spec, device, metric=args.metric, **settings)
    except (CheckpointError, DatasetError, ConfigError, ValueError, RuntimeError) as exc:
        return fail("ssd-eval", exc)
    print(f"{args.checkpoint} on {args.data} [{args.split}] ({loaded.arch}, {loaded.spec.name})")
    print(result.table())
    if args.json:
        payload = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": loaded.sha256, "data": str(args.data),
                   "split": args.split, **result.to_dict()}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

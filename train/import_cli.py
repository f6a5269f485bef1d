"""``ssd-import torchvision MODEL [--weights coco|FILE|URL] --out CKPT``: a torchvision detector as a checkpoint.

Examples::

    ssd-import torchvision ssdlite320_mobilenet_v3_large --out runs/coco/ssdlite.pt       # COCO weights
    ssd-import torchvision ssd300_vgg16 --weights ~/Downloads/ssd300_vgg16_coco-b556d3b4.pth --out ssd300.pt

``--weights coco`` (the default) fetches torchvision's published COCO file (hash checked,
cached in torch's hub folder). The checkpoint is a normal one: ``ssd-eval``, ``ssd-convert``,
``ssd-compare`` and ``ssd-edge`` take it as is, and ``ssd-train model.init_weights=CKPT``
fine-tunes from it. Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssd.cli import EXIT_OK, ArgumentParser, fail


def build_parser() -> argparse.ArgumentParser:
    from train.models.torchvision_import import DETECTORS

    parser = ArgumentParser(prog="ssd-import", description="Import a pretrained detector as an ssd-train checkpoint.")
    parser.add_argument("source", choices=["torchvision"], help="where the detector comes from")
    parser.add_argument("model", choices=sorted(DETECTORS), help="torchvision builder name")
    parser.add_argument("--weights", default="coco",
                        help="coco (torchvision's published COCO weights), a state-dict file, or an http(s)/file URL")
    parser.add_argument("--labels", help="text file with one foreground label per line (default: COCO's 90 for 91 outputs)")
    parser.add_argument("--out", required=True, help="checkpoint to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from ssd.sidecar import file_sha256
        from train.checkpoint import save_checkpoint
        from train.models.pretrained import WeightsFetchError, resolve
        from train.models.torchvision_import import (
            TorchvisionImportError,
            build_imported,
            checkpoint_payload,
            get_detector,
        )
        from train.models.weights import WeightsError, read_state_dict

        detector = get_detector(args.model)
        source = detector.coco_weights if args.weights == "coco" else args.weights
        path, what = resolve(source)
        print(f"weights: {what}")
        labels = None
        if args.labels:
            labels = [ln.strip() for ln in Path(args.labels).read_text().splitlines() if ln.strip()]
        model, detector, labels = build_imported(args.model, read_state_dict(path), labels)
        save_checkpoint(checkpoint_payload(model, detector, labels, str(source), file_sha256(path)), args.out)
    except (WeightsFetchError, WeightsError, TorchvisionImportError, OSError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return fail("ssd-import", message)
    print(f"wrote {args.out}: {detector.arch} ({detector.spec.name}, {len(labels)} labels), from torchvision's "
          f"{detector.torchvision_name}; torchvision's own postprocess was {detector.postprocess}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

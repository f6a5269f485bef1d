"""``ssd-compare``: PyTorch FP32 and every artifact on the same images; table, JSON, markdown, plots."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from compare.diffs import DEFAULT_DIFF, describe
from compare.output import write_report
from compare.report import BOOTSTRAP_NOTE, changes_table, held_out_note, table
from compare.run import CompareOptions, run_comparison
from ssd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArgumentParser, fail


def parse_args(argv: list[str] | None = None) -> CompareOptions:
    parser = ArgumentParser(prog="ssd-compare", description="PyTorch FP32 and every artifact on the same images: table, JSON, "
                            "markdown, HTML and plots (with --strict, exit 1 when an artifact is flagged or failed).")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint the artifacts came from")
    parser.add_argument("--artifacts", type=Path, required=True, help="folder written by ssd-convert")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (VOC layout or COCO with annotations/)")
    parser.add_argument("--split", default="val", help="VOC ImageSets/Main/<split>.txt or COCO instances_<split>.json (default: val)")
    parser.add_argument("--format", default="auto", choices=("auto", "voc", "coco"), help="dataset layout (default: detect)")
    parser.add_argument("--out", type=Path, required=True, help="report folder, e.g. reports/NAME")
    parser.add_argument("--metric", default="coco", choices=("coco", "voc07", "voc"),
                        help="coco only (default), or also report VOC07 11-point (the SSD paper's) or VOC2010+ all-point mAP beside COCO's")
    parser.add_argument("--threads", type=int, default=2, help="inference threads for every runtime (default 2)")
    parser.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                        help="flag INT8 artifacts losing more than POINTS of mAP@0.5 (0-100, as in ssd-convert)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when an artifact is flagged (its drop significantly above --max-drop), fails to run, "
                             "or failed in ssd-convert (a row from the folder's ssd-convert.json)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--diff-images", type=int, default=4, help="most-changed images per INT8 diff sheet (default 4)")
    parser.add_argument("--diff-score", type=float, default=DEFAULT_DIFF.score,
                        help=f"score from which boxes are compared in the detection diffs (default {DEFAULT_DIFF.score:g}, "
                        "the edge app's; lower it for a model whose boxes score low)")
    args = parser.parse_args(argv)
    if args.max_drop is not None and not 0.0 <= args.max_drop <= 100.0:
        parser.error(f"--max-drop is in points of mAP@0.5 (0-100, as in ssd-convert), got {args.max_drop:g}")
    if not 0 <= args.diff_score <= 1:
        parser.error(f"--diff-score {args.diff_score:g} is not a score in [0, 1]")
    if args.diff_images < 0:
        parser.error(f"--diff-images {args.diff_images} must be 0 or more")
    return CompareOptions(
        checkpoint=args.checkpoint, artifacts=args.artifacts, data=args.data, split=args.split, out=args.out, format=args.format,
        metric=args.metric,
        threads=args.threads, max_drop=args.max_drop, strict=args.strict, limit=args.limit,
        diff_images=args.diff_images, diff=replace(DEFAULT_DIFF, score=args.diff_score),
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        report = run_comparison(options, log=lambda m: print(m, flush=True))
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
        return fail("ssd-compare", exc, EXIT_USAGE)
    paths = write_report(report, options.out, options.diff_images)
    print()
    print(table(report))
    if report.changes:
        print()
        print(f"detection changes against {report.reference.name} ({describe(next(iter(report.changes.values())).params)}):")
        print(changes_table(report))
    for row in report.rows:
        if row.note:
            print(f"note: {row.name}: {row.note}")
        if row.held_out:
            print(f"note: {row.name}: {held_out_note(row)}")
    print(f"note: {BOOTSTRAP_NOTE}")
    print()
    for kind, path in paths.items():
        print(f"{kind:>24}: {path}")
    print(f"\nopen the report: {paths['html'].resolve().as_uri()}")
    if options.strict and report.flagged:
        print(f"ssd-compare: flagged: {', '.join(report.flagged)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy of every artifact against PyTorch FP32 on the same images, through one code path.

The split is read by the dataset opener every stage shares (:func:`ssd.data.open_dataset`:
VOC or COCO). Each artifact runs through the edge app's own backend
(:class:`compare.predictors.ArtifactPredictor`) on frames made by
:func:`ssd.preprocess.preprocess`; its head outputs go through :func:`ssd.decode_and_nms`
with :data:`ssd.postprocess.EVAL` and the COCO evaluator
(:func:`ssd.coco_eval.evaluate_detections`; with ``--metric voc07|voc`` VOC AP beside it).
The PyTorch row is :func:`train.evaluate.predict` at the checkpoint's evaluation settings,
the very predictions ``ssd-train`` and ``ssd-eval`` score, so the three give one mAP. Latency is the
runtime's inference call alone, median over the images at a fixed thread count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compare.diffs import DEFAULT_DIFF, DiffParams, ModelChanges, model_changes
from compare.missing import missing_rows
from compare.predictors import ArtifactPredictor, Predictor, TorchPredictor
from compare.rank_diffs import RankChanges, rank_changes
from compare.results import ComparisonReport, ModelResult
from compare.uncertainty import drop_intervals
from edge_app.backends.endtoend import unpack
from edge_app.backends.timed import run_frames
from ssd.coco_eval import evaluate_detections
from ssd.data import DetectionDataset, Sample, open_dataset
from ssd.postprocess import EVAL, Detections, PostprocessParams, decode_and_nms
from ssd.priors import default_boxes
from ssd.sidecar import read_sidecar, sidecar_path
from ssd.voc_eval import evaluate_voc

MODEL_SUFFIXES = (".onnx", ".xml", ".tflite")
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}


def artifact_size_mb(path: Path) -> float:
    """Bytes on disk of a model, OpenVINO's ``.bin`` weights included, in MB (1e6)."""
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def discover_artifacts(folder: str | Path) -> list[Path]:
    """Models with a sidecar in ``folder``, FP32 first, then FP16, then INT8."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"artifact folder {folder} does not exist; run ssd-convert first")
    found = [p for p in sorted(folder.iterdir()) if p.suffix in MODEL_SUFFIXES and sidecar_path(p).exists()]

    def order(p: Path) -> tuple[int, str]:
        try:
            return PRECISION_ORDER.get(read_sidecar(p).precision, 9), p.name
        except ValueError:
            return 9, p.name

    return sorted(found, key=order)


def predict(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    params: PostprocessParams = EVAL,
    warmup: int = 2,
) -> tuple[list[Detections], list[float]]:
    """Detections for every BGR image, and the inference latency of each in ms (the timed
    runner :func:`edge_app.backends.timed.run_frames`: ``warmup`` untimed calls, then the
    inference call alone timed per image)."""
    priors = default_boxes(predictor.spec)
    variances = predictor.spec.variances
    run = run_frames(predictor, images, warmup)
    if getattr(predictor, "in_graph", None) is not None:
        # an end-to-end artifact returns its in-graph detections (edge_app.backends.endtoend), at its own thresholds
        return [unpack(dets, counts)[0] for dets, counts in run.outputs], run.times_ms
    detections = [decode_and_nms(loc, conf, priors, variances=variances, **params._asdict())[0] for loc, conf in run.outputs]
    return detections, run.times_ms


def score(result: ModelResult, samples: Sequence, detections: list[Detections], label_names: Sequence[str],
          metric: str = "coco") -> None:
    """COCO metrics into ``result.metrics``, and with ``metric`` ``voc07``/``voc`` that VOC AP
    too (``result.voc``), beside them."""
    result.metrics = evaluate_detections(samples, detections, label_names)
    if metric != "coco":
        result.voc = evaluate_voc(samples, detections, label_names, metric=metric)


def evaluate_predictor(
    predictor: Predictor,
    samples: Sequence,
    label_names: Sequence[str],
    params: PostprocessParams = EVAL,
    warmup: int = 2,
    metric: str = "coco",
) -> ModelResult:
    """Run one predictor over ``samples`` (with ``.image``, pixel ``.boxes``, ``.labels``...) and score it."""
    path = predictor.path
    result = ModelResult(
        name=predictor.name,
        runtime=predictor.runtime,
        precision=predictor.precision,
        path=str(path) if path is not None else None,
        size_mb=artifact_size_mb(path) if path is not None and path.exists() else None,
    )
    result.executed_by = getattr(predictor, "executed_by", None)
    result.note = getattr(predictor, "note", None)
    result.held_out = getattr(predictor, "held_out", None)
    result.class_logits = getattr(predictor, "class_logits", None)
    result.detections, result.latency_ms = predict(predictor, [s.image for s in samples], params, warmup)
    score(result, samples, result.detections, label_names, metric)
    return result


def evaluate_reference(reference: TorchPredictor, reader: SampleReader, warmup: int = 2, metric: str = "coco") -> ModelResult:
    """The PyTorch row: :func:`train.evaluate.predict` on the CPU with the checkpoint's
    evaluation settings, scored like ``ssd-eval`` and ``ssd-train`` score it, and its latency."""
    import torch

    from train.evaluate import predict as predict_batched

    result = ModelResult(name=reference.name, runtime=reference.runtime, precision=reference.precision,
                         path=str(reference.path), size_mb=reference.path.stat().st_size / 1e6)
    batched = predict_batched(reference.model, reader, reference.spec, torch.device("cpu"), **reference.eval_settings)
    score(result, reader.samples, batched, reader.label_names, metric)
    # per image, batch 1, for the latency and the detection diffs (the metrics stay the batched ones)
    result.detections, result.latency_ms = predict(reference, [s.image for s in reader.samples], warmup=warmup)
    return result


def check_labels(name: str, labels: Sequence[str], expected: Sequence[str]) -> None:
    """Refuse a model or dataset whose class names are not the checkpoint's, in order."""
    if list(labels) != list(expected):
        raise ValueError(f"{name} has labels {list(labels)} but the checkpoint has {list(expected)}; "
                         "use the dataset it was trained on and artifacts converted from it")


@dataclass(frozen=True)
class CompareOptions:
    """What ``ssd-compare`` compares and how.

    max_drop: flag an INT8 artifact that loses more than this many points of mAP@0.5.
    strict: a flag or a failed artifact makes the CLI exit non-zero.
    format: the dataset layout, ``voc``, ``coco`` or ``auto`` (:func:`ssd.data.open_dataset`).
    limit: evaluate only the first N images of the split.
    metric: ``coco`` (always reported), or ``voc07``/``voc`` reported beside it.
    diff: how detections are matched against FP32's for the detection diffs.
    diff_images: how many most-changed images each INT8 artifact's diff sheet shows.
    """

    checkpoint: Path
    artifacts: Path
    data: Path
    split: str
    out: Path
    format: str = "auto"
    metric: str = "coco"
    threads: int = 2
    max_drop: float | None = None
    strict: bool = False
    limit: int | None = None
    warmup: int = 2
    diff: DiffParams = DEFAULT_DIFF
    diff_images: int = 4


class SampleReader:
    """Samples read once into memory, as a :class:`ssd.data.DetectionDataset`."""

    def __init__(self, samples: list[Sample], label_names: Sequence[str]) -> None:
        self.samples = samples
        self.label_names = list(label_names)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def annotation(self, i: int) -> Sample:
        return self.samples[i]


def load_samples(data: Path, split: str, label_names: Sequence[str], limit: int | None, fmt: str = "auto") -> SampleReader:
    """Images and ground truth of one VOC or COCO split, read once into memory.

    The split is opened like training opens it (:func:`ssd.data.open_dataset`); its class
    names must be the checkpoint's, in the same order.
    """
    dataset: DetectionDataset = open_dataset(data, split, fmt, label_names=list(label_names))
    check_labels(f"{data}:{split}", dataset.label_names, label_names)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"split {split!r} of {data} has no images")
    return SampleReader([dataset[i] for i in range(count)], label_names)


def run_comparison(options: CompareOptions, log=print) -> ComparisonReport:
    """Evaluate PyTorch FP32 and every artifact in ``options.artifacts`` on the same images."""
    reference = TorchPredictor(options.checkpoint, options.threads)
    artifacts = discover_artifacts(options.artifacts)
    missing = missing_rows(options.artifacts, artifacts)
    if not artifacts and not missing:
        raise FileNotFoundError(f"no models with sidecars in {options.artifacts}; run ssd-convert first")
    reader = load_samples(options.data, options.split, reference.labels, options.limit, options.format)
    samples = reader.samples
    log(f"comparing {len(artifacts) + 1} models on {len(samples)} images of {options.data}:{options.split} "
        f"at {options.threads} threads")
    rows = []
    predictors: list[tuple[str, Path | None]] = [("pytorch_fp32", None)] + [(p.name, p) for p in artifacts]
    for index, (label, path) in enumerate(predictors, start=1):
        log(f"[{index}/{len(predictors)}] {label}")
        if path is None:
            rows.append(evaluate_reference(reference, reader, warmup=options.warmup, metric=options.metric))
            continue
        try:
            predictor = ArtifactPredictor(path, options.threads)
            check_labels(path.name, predictor.labels, reference.labels)
            if predictor.checkpoint_sha256 != reference.sha256:
                raise ValueError(f"{path.name} was converted from another checkpoint (sha256 differs)")
            try:
                rows.append(evaluate_predictor(predictor, samples, reference.labels, warmup=options.warmup,
                                               metric=options.metric))
            finally:
                predictor.close()
        except Exception as exc:  # one broken artifact must not hide the others' results
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            rows.append(ModelResult(path.name, "?", "?", str(path), artifact_size_mb(path), error=message))
    for row in missing:
        log(f"{row.name}: {row.error}")
    rows += missing
    report = ComparisonReport(
        rows=rows,
        label_names=list(reference.labels),
        dataset=str(options.data),
        split=options.split,
        num_images=len(samples),
        threads=options.threads,
        max_drop=options.max_drop,
        metric=options.metric,
        samples=samples,
    )
    report.changes = detection_changes(report, options.diff)
    report.ranks = ranking_changes(report)
    report.intervals = drop_intervals(report)
    return report


def ranking_changes(report: ComparisonReport) -> dict[str, RankChanges]:
    """Changes in the evaluation's ranking (:mod:`compare.rank_diffs`) of every scored row against the reference's."""
    ref = report.reference.detections
    if ref is None or not report.samples:
        return {}
    ids = [str(getattr(s, "image_id", i)) for i, s in enumerate(report.samples)]
    return {row.name: rank_changes(row.name, report.samples, ref, row.detections, report.label_names, ids)
            for row in report.rows[1:] if row.detections is not None and row.error is None}


def detection_changes(report: ComparisonReport, params: DiffParams = DEFAULT_DIFF) -> dict[str, ModelChanges]:
    """Box-level changes (:mod:`compare.diffs`) of every scored row against the reference's detections."""
    ref = report.reference.detections
    if ref is None:
        return {}
    return {row.name: model_changes(row.name, ref, row.detections, params)
            for row in report.rows[1:] if row.detections is not None}

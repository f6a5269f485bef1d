"""Accuracy of every artifact against PyTorch FP32 on the same images, through one code path.

Each predictor (PyTorch from the checkpoint, or an artifact through the edge app's own
backend) sees the same frames through :func:`ssd.preprocess.preprocess`, and its head
outputs go through the same :func:`ssd.decode_and_nms` with evaluation thresholds
(:data:`ssd.postprocess.EVAL`) and the same COCO evaluator
(:func:`train.coco_eval.evaluate_detections`). Latency is the runtime's inference call
alone, median over the images at a fixed thread count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ssd.postprocess import EVAL, Detections, PostprocessParams, decode_and_nms
from ssd.preprocess import InputSpec, preprocess
from ssd.priors import default_boxes
from ssd.sidecar import read_sidecar, sidecar_path
from ssd.specs import SSDSpec
from train.coco_eval import EvalResult, evaluate_detections

MODEL_SUFFIXES = (".onnx", ".xml", ".tflite")
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}


class Predictor(Protocol):
    """Something that maps a preprocessed batch to raw head outputs.

    name: row label, e.g. ``"pytorch_fp32"`` or ``"openvino_int8"``.
    input_spec: what :func:`ssd.preprocess.preprocess` must produce for it.
    spec: the prior spec its outputs are encoded against.
    """

    name: str
    runtime: str
    precision: str
    path: Path | None
    input_spec: InputSpec
    spec: SSDSpec

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(1, ...)`` input -> ``loc (1, P, 4)``, ``conf (1, P, C)`` float32 logits."""
        ...


@dataclass
class RunResult:
    """One row of the comparison."""

    name: str
    runtime: str
    precision: str
    path: str | None
    size_mb: float | None
    metrics: EvalResult | None = None
    latency_ms: list[float] = field(default_factory=list, repr=False)
    error: str | None = None
    executed_by: str | None = None
    note: str | None = None

    @property
    def latency_p50(self) -> float | None:
        return float(np.median(self.latency_ms)) if self.latency_ms else None

    @property
    def latency_p90(self) -> float | None:
        """Nearest-rank (lower) 90th percentile."""
        if not self.latency_ms:
            return None
        return sorted(self.latency_ms)[int(0.9 * (len(self.latency_ms) - 1))]


class TorchPredictor:
    """The checkpoint in PyTorch FP32 on the CPU: the reference row."""

    runtime = "pytorch"
    precision = "fp32"

    def __init__(self, checkpoint: str | Path, threads: int) -> None:
        import torch

        from train.checkpoint import load_model

        torch.set_num_threads(threads)
        loaded = load_model(checkpoint)
        self._torch = torch
        self.model = loaded.model.eval()
        self.labels = loaded.labels
        self.spec = loaded.spec
        self.name = "pytorch_fp32"
        self.path = Path(checkpoint)
        self.sha256 = loaded.sha256
        size = loaded.spec.image_size
        self.input_spec = InputSpec(size, size, layout="NCHW", dtype="float32", color="RGB")

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            loc, conf = self.model(self._torch.from_numpy(batch))
        return loc.numpy(), conf.numpy()


class ArtifactPredictor:
    """An artifact run by the edge app's backend for its suffix."""

    def __init__(self, path: Path, threads: int) -> None:
        from edge_app.backends import open_backend

        self.backend = open_backend(path, threads=threads)
        sidecar = self.backend.sidecar
        self.name = sidecar.format
        self.runtime = sidecar.runtime
        self.executed_by = self.backend.name
        self.precision, self.note = executed_precision(sidecar.precision, sidecar.extra, self.executed_by)
        self.path = path
        self.spec = sidecar.spec
        self.labels = sidecar.labels
        self.checkpoint_sha256 = sidecar.checkpoint_sha256
        self.input_spec = sidecar.input

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.infer(batch)

    def close(self) -> None:
        self.backend.close()


def executed_precision(precision: str, extra: dict, executed_by: str) -> tuple[str, str | None]:
    """The precision a row really ran in, and why it differs from the sidecar's.

    A TensorRT calibration artifact is an FP32 graph plus an INT8 table that only TensorRT
    reads: without ``TensorrtExecutionProvider`` it runs in FP32, and counting it as INT8
    would report a zero INT8 loss that nobody measured.
    """
    provider = extra.get("execution_provider")
    if precision == "int8" and provider and provider not in executed_by:
        return "fp32", f"INT8 needs {provider}; ran the FP32 graph on {executed_by}"
    return precision, None


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
    """Detections for every BGR image, and the inference latency of each in ms."""
    priors = default_boxes(predictor.spec)
    variances = predictor.spec.variances
    if images and warmup:
        first = preprocess(images[0], predictor.input_spec)
        for _ in range(warmup):
            predictor.infer(first)
    detections, latency = [], []
    for image in images:
        batch = preprocess(image, predictor.input_spec)
        start = time.perf_counter()
        loc, conf = predictor.infer(batch)
        latency.append((time.perf_counter() - start) * 1e3)
        detections.append(decode_and_nms(loc, conf, priors, variances=variances, **params._asdict())[0])
    return detections, latency


def evaluate_predictor(
    predictor: Predictor,
    samples: Sequence,
    label_names: Sequence[str],
    params: PostprocessParams = EVAL,
    warmup: int = 2,
) -> RunResult:
    """Run one predictor over ``samples`` (with ``.image``, pixel ``.boxes``, ``.labels``...) and score it."""
    path = predictor.path
    result = RunResult(
        name=predictor.name,
        runtime=predictor.runtime,
        precision=predictor.precision,
        path=str(path) if path is not None else None,
        size_mb=artifact_size_mb(path) if path is not None and path.exists() else None,
    )
    result.executed_by = getattr(predictor, "executed_by", None)
    result.note = getattr(predictor, "note", None)
    detections, result.latency_ms = predict(predictor, [s.image for s in samples], params, warmup)
    result.metrics = evaluate_detections(samples, detections, label_names)
    return result


def check_labels(name: str, labels: Sequence[str], expected: Sequence[str]) -> None:
    if list(labels) != list(expected):
        raise ValueError(f"{name} has labels {list(labels)} but the checkpoint has {list(expected)}; convert it from this checkpoint")


@dataclass(frozen=True)
class CompareOptions:
    """What ``ssd-compare`` compares and how.

    max_drop: flag an INT8 artifact that loses more than this many points of mAP@0.5.
    strict: a flag or a failed artifact makes the CLI exit non-zero.
    limit: evaluate only the first N images of the split.
    """

    checkpoint: Path
    artifacts: Path
    data: Path
    split: str
    out: Path
    threads: int = 2
    max_drop: float | None = None
    strict: bool = False
    limit: int | None = None
    warmup: int = 2


@dataclass
class ComparisonReport:
    """The rows (PyTorch FP32 first) and what they were measured on."""

    rows: list[RunResult]
    label_names: list[str]
    dataset: str
    split: str
    num_images: int
    threads: int
    max_drop: float | None

    @property
    def reference(self) -> RunResult:
        return self.rows[0]

    def delta(self, row: RunResult) -> tuple[float | None, float | None]:
        """``(mAP@0.5, mAP@[.5:.95])`` of ``row`` minus the reference's, in points."""
        ref = self.reference.metrics
        if row.metrics is None or ref is None:
            return None, None
        return 100 * (row.metrics.map50 - ref.map50), 100 * (row.metrics.map - ref.map)

    def flag(self, row: RunResult) -> str | None:
        """Why ``row`` is flagged, or ``None``."""
        if row.error:
            return f"error: {row.error}"
        d50, _ = self.delta(row)
        if self.max_drop is not None and row.precision == "int8" and d50 is not None and -d50 > self.max_drop:
            return f"drop {-d50:.2f} > {self.max_drop:g} pts"
        return None

    @property
    def flagged(self) -> list[str]:
        return [r.name for r in self.rows if self.flag(r)]


def load_samples(data: Path, split: str, label_names: Sequence[str], limit: int | None) -> list:
    """Images and ground truth of one split, read once into memory (class order of the checkpoint)."""
    from train.data.voc import VOCDataset

    dataset = VOCDataset(data, split, label_names=list(label_names))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"split {split!r} of {data} has no images")
    return [dataset[i] for i in range(count)]


def run_comparison(options: CompareOptions, log=print) -> ComparisonReport:
    """Evaluate PyTorch FP32 and every artifact in ``options.artifacts`` on the same images."""
    reference = TorchPredictor(options.checkpoint, options.threads)
    artifacts = discover_artifacts(options.artifacts)
    if not artifacts:
        raise FileNotFoundError(f"no models with sidecars in {options.artifacts}; run ssd-convert first")
    samples = load_samples(options.data, options.split, reference.labels, options.limit)
    log(f"comparing {len(artifacts) + 1} models on {len(samples)} images of {options.data}:{options.split} "
        f"at {options.threads} threads")
    rows = []
    predictors: list[tuple[str, Path | None]] = [("pytorch_fp32", None)] + [(p.name, p) for p in artifacts]
    for index, (label, path) in enumerate(predictors, start=1):
        log(f"[{index}/{len(predictors)}] {label}")
        if path is None:
            rows.append(evaluate_predictor(reference, samples, reference.labels, warmup=options.warmup))
            continue
        try:
            predictor = ArtifactPredictor(path, options.threads)
            check_labels(path.name, predictor.labels, reference.labels)
            if predictor.checkpoint_sha256 != reference.sha256:
                raise ValueError(f"{path.name} was converted from another checkpoint (sha256 differs)")
            try:
                rows.append(evaluate_predictor(predictor, samples, reference.labels, warmup=options.warmup))
            finally:
                predictor.close()
        except Exception as exc:  # one broken artifact must not hide the others' results
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            rows.append(RunResult(path.name, "?", "?", str(path), artifact_size_mb(path), error=message))
    return ComparisonReport(
        rows=rows,
        label_names=list(reference.labels),
        dataset=str(options.data),
        split=options.split,
        num_images=len(samples),
        threads=options.threads,
        max_drop=options.max_drop,
    )

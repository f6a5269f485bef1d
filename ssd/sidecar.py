"""The JSON sidecar next to every artifact, and its validation. numpy-free, torch-free.

The sidecar of ``model.onnx`` is ``model.onnx.json``. It records what the edge side needs
to feed the model and read its outputs, where the model came from, and everything a
runtime needs to run it exactly as it was validated (:class:`RuntimeHints`): those are
typed fields that the backends read, never free-form ``extra`` keys. ``extra`` holds only
provenance for people (quantization settings, the exporter used), which no code reads to
decide how to run the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ssd.atomic import atomic_write_text
from ssd.preprocess import InputSpec
from ssd.specs import SSDSpec

#: 2: runtime hints, companion files and the validation record became typed fields
#: 3: where decode + NMS live (:class:`InGraphPostprocess`), and the model file carries its identity
SIDECAR_VERSION = 3
PRECISIONS = ("fp32", "fp16", "int8")
#: OpenVINO ``INFERENCE_PRECISION_HINT`` values a sidecar may ask for
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
#: how an artifact was checked against PyTorch (:class:`ValidationRecord.kind`)
VALIDATION_KINDS = ("output_diff", "detections", "sqnr", "graph_and_table", "end_to_end")


class SidecarError(ValueError):
    """A missing, malformed or mismatching sidecar; the message says what to do."""


#: in-graph detection-output op -> the artifact's output keys (:attr:`Sidecar.outputs`), in order:
#: ``NonMaxSuppression`` (ONNX): ``boxes (K, 4)`` xyxy in [0, 1], ``scores (K,)``, ``labels (K,)``
#: model classes ``1..C-1``, K dynamic; ``DetectionOutput`` (OpenVINO): ``detection_out
#: (1, 1, N, 7)`` rows ``[image, label, score, x1, y1, x2, y2]``, ``image = -1`` after the last;
#: ``TFLite_Detection_PostProcess``: the TF Object Detection API's ``boxes (1, N, 4)`` as
#: ``[y1, x1, y2, x2]``, ``classes (1, N)`` 0-based foreground classes, ``scores (1, N)``,
#: ``count (1,)``; ``EfficientNMS_TRT`` (TensorRT plugin): ``num_detections (1, 1)``,
#: ``detection_boxes (1, N, 4)`` xyxy, ``detection_scores (1, N)``, ``detection_classes (1, N)``
#: 0-based foreground classes.
IN_GRAPH_OUTPUTS: dict[str, tuple[str, ...]] = {
    "NonMaxSuppression": ("boxes", "scores", "labels"),
    "DetectionOutput": ("detection_out",),
    "TFLite_Detection_PostProcess": ("boxes", "classes", "scores", "count"),
    "EfficientNMS_TRT": ("num_detections", "detection_boxes", "detection_scores", "detection_classes"),
}


@dataclass(frozen=True)
class InGraphPostprocess:
    """Decode + NMS inside the model graph (an end-to-end artifact), with the thresholds baked in.

    op: the runtime's own detection-output op (a key of :data:`IN_GRAPH_OUTPUTS`).
    score_threshold, iou_threshold: as in :class:`ssd.PostprocessParams` (a class probability
        after softmax; greedy per-class NMS).
    top_k: candidates entering NMS, counted as the op counts them (``top_k_per``); 0: no limit.
    top_k_per: ``"image"`` (the app's top-k over every prior/class pair), ``"class"`` (per-class
        candidates: DetectionOutput's ``top_k``, TFLite's ``detections_per_class``) or ``"none"``.
    max_detections: detections per image after NMS (the outputs' fixed size where they are padded).
    preset: the :mod:`ssd.postprocess` preset the thresholds came from (``"LIVE"``, ``"EVAL"``).
    """

    op: str
    score_threshold: float
    iou_threshold: float
    top_k: int
    max_detections: int
    top_k_per: str = "class"
    preset: str = "LIVE"

    @property
    def output_keys(self) -> tuple[str, ...]:
        return IN_GRAPH_OUTPUTS[self.op]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InGraphPostprocess:
        return cls(op=str(data["op"]), score_threshold=float(data["score_threshold"]),
                   iou_threshold=float(data["iou_threshold"]), top_k=int(data["top_k"]),
                   max_detections=int(data["max_detections"]), top_k_per=str(data.get("top_k_per", "class")),
                   preset=str(data.get("preset", "LIVE")))


@dataclass(frozen=True)
class OutputSpec:
    """One model output: its runtime name, shape, dtype and (for integer outputs) quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(s) for s in data["shape"]),
            dtype=str(data.get("dtype", "float32")),
            scale=data.get("scale"),
            zero_point=data.get("zero_point"),
        )


def _plain_name(name: str, what: str, artifact_name: str) -> str:
    """``name`` if it is a plain file name (no folder, not ``.``/``..``); else :class:`SidecarError`."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or "\\" in name:
        raise SidecarError(f"sidecar of {artifact_name} names {what} {name!r}, which is not a plain file name; re-run ssd-convert")
    return name


@dataclass(frozen=True)
class TensorRTCalibration:
    """A TensorRT INT8 calibration table for a graph without Q/DQ nodes (implicit quantization).

    table: plain file name of the table beside the artifact (ONNX Runtime's TensorRT provider
        reads it from ``trt_engine_cache_path``); it is also listed in :attr:`Sidecar.files`.
    native: whether the table is TensorRT's own format (``trt_int8_use_native_calibration_table``)
        rather than ONNX Runtime's flatbuffers one.
    text, ranges, tensorrt_native: the companion files written with it (plain names, all in
        :attr:`Sidecar.files`; empty in sidecars written before they were typed): ONNX Runtime's
        text table (``.calibration.cache``), the calibrated ranges (``.calibration.json``, what
        the table must cover) and the same ranges in TensorRT's own cache format
        (``.calibration.trt``, for ``trtexec --calib``).
    tensors: how many tensors were calibrated (0: not recorded).
    """

    table: str
    native: bool = False
    text: str = ""
    ranges: str = ""
    tensorrt_native: str = ""
    tensors: int = 0

    @property
    def companions(self) -> tuple[str, ...]:
        """Every file name it names, the table first."""
        return tuple(name for name in (self.table, self.text, self.ranges, self.tensorrt_native) if name)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorRTCalibration:
        return cls(table=str(data["table"]), native=bool(data.get("native", False)), text=str(data.get("text", "")),
                   ranges=str(data.get("ranges", "")), tensorrt_native=str(data.get("tensorrt_native", "")),
                   tensors=int(data.get("tensors", 0)))


@dataclass(frozen=True)
class TensorRTGraphCheck:
    """What :mod:`convert.tensorrt_check` proved about a QDQ graph without TensorRT.

    passed: every rule held (``problems`` is empty).
    tensorrt: the TensorRT versions whose ONNX parser rules were checked, e.g. ``"8.6, 10.x"``.
    opset: the graph's ONNX opset; ops: its operator types, sorted (all in the accepted set).
    weighted_nodes: Conv / ConvTranspose / Gemm / MatMul nodes; quantized_nodes: those whose
        data input and weight both come through DequantizeLinear (the rest run in float).
    activation_pairs / weight_pairs: Q -> DQ pairs on activations (per tensor) and on weights
        (per output channel).
    problems: one line per broken rule (empty when ``passed``).
    """

    passed: bool
    tensorrt: str
    opset: int
    ops: list[str] = field(default_factory=list)
    weighted_nodes: int = 0
    quantized_nodes: int = 0
    activation_pairs: int = 0
    weight_pairs: int = 0
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorRTGraphCheck:
        return cls(
            passed=bool(data["passed"]),
            tensorrt=str(data["tensorrt"]),
            opset=int(data["opset"]),
            ops=[str(x) for x in data.get("ops", [])],
            weighted_nodes=int(data.get("weighted_nodes", 0)),
            quantized_nodes=int(data.get("quantized_nodes", 0)),
            activation_pairs=int(data.get("activation_pairs", 0)),
            weight_pairs=int(data.get("weight_pairs", 0)),
            problems=[str(x) for x in data.get("problems", [])],
        )


@dataclass(frozen=True)
class RuntimeHints:
    """How a runtime must run the artifact to compute what was validated.

    inference_precision: OpenVINO ``INFERENCE_PRECISION_HINT`` (``f32``, ``bf16``, ``f16``) or
        ``None`` (the device's default). FP32 and FP16 IR carry ``f32``: OpenVINO's CPU plugin
        would otherwise run them in bf16 on CPUs with AVX512-BF16/AMX.
    execution_provider: the ONNX Runtime provider the artifact is made for, or ``None``. A
        TensorRT calibration artifact is INT8 only under ``TensorrtExecutionProvider`` (its
        graph is FP32); a TensorRT QDQ artifact carries its own scales and is INT8 under any.
    provider_options: further options for that provider, beyond the ones the backend derives.
    tensorrt_calibration: the INT8 calibration table, for implicit-quantization artifacts.
    tensorrt_check: for an explicit-quantization (QDQ) artifact made for TensorRT, the static
        check of its graph against TensorRT's parser rules (:class:`TensorRTGraphCheck`).
    """

    inference_precision: str | None = None
    execution_provider: str | None = None
    provider_options: dict[str, Any] = field(default_factory=dict)
    tensorrt_calibration: TensorRTCalibration | None = None
    tensorrt_check: TensorRTGraphCheck | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeHints:
        calib = data.get("tensorrt_calibration")
        return cls(
            inference_precision=data.get("inference_precision"),
            execution_provider=data.get("execution_provider"),
            provider_options=dict(data.get("provider_options") or {}),
            tensorrt_calibration=TensorRTCalibration.from_dict(calib) if calib else None,
            tensorrt_check=TensorRTGraphCheck.from_dict(data["tensorrt_check"]) if data.get("tensorrt_check") else None,
        )


@dataclass(frozen=True)
class ValidationRecord:
    """The check ``ssd-convert`` ran before installing the artifact.

    kind: ``output_diff`` (FP32/FP16: largest output difference from PyTorch), ``detections``
        (INT8: detections matched to PyTorch's), ``sqnr`` (INT8 where PyTorch found too few
        objects to compare detections), ``graph_and_table`` (a TensorRT calibration artifact:
        the FP32 graph under ONNX Runtime plus the table's coverage) or ``end_to_end`` (decode +
        NMS in the graph: its detections against the app's on its raw-head twin,
        :mod:`convert.endtoend.check`).
    passed, summary, metrics: the outcome; images / images_from: what it ran on.
    """

    kind: str
    passed: bool
    summary: str
    images: int = 0
    images_from: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationRecord:
        return cls(
            kind=str(data["kind"]),
            passed=bool(data["passed"]),
            summary=str(data.get("summary", "")),
            images=int(data.get("images", 0)),
            images_from=str(data.get("images_from", "")),
            metrics={str(k): (None if v is None else float(v)) for k, v in dict(data.get("metrics", {})).items()},
        )


@dataclass(frozen=True)
class HeldOutAccuracy:
    """The INT8 artifact's accuracy on the calibration set's held-out images, as ``ssd-convert
    --max-drop`` measured and enforced it (the same decode + NMS thresholds and evaluator as
    ``ssd-compare``). All mAPs are points of mAP@0.5 (0-100).

    fp32_map50: PyTorch FP32 on the held-out images; map50: this artifact; drop_points:
        ``fp32_map50 - map50`` (negative when INT8 scored higher).
    max_drop_points: the limit the artifact was held to (``None``: measured, not enforced).
    images / images_from: how many held-out images, and the calibration manifest's sha256.
    float_layers: layers (PyTorch module paths of convolutions) the automatic fallback left
        in float, worst first; empty for a full-INT8 artifact.
    full_int8_map50: the full-INT8 artifact's mAP before any fallback (equals ``map50`` when
        nothing stayed float).
    latency_ms / full_int8_latency_ms: median single-image inference time of this artifact and
        of the full-INT8 one, measured side by side on the held-out images at the conversion's
        thread count (``None`` when nothing stayed float: no second artifact to compare).
    drop_low / drop_high: the 95 % paired-bootstrap interval of ``drop_points`` over the held-out
        images (:mod:`ssd.bootstrap`; ``bootstrap_resamples`` resamples, seed ``bootstrap_seed``);
        ``None`` in records written before intervals existed.
    resolvable_points: the smallest drop these held-out images can tell from no drop, estimated
        from FP32's detections before any export (:func:`ssd.bootstrap.resolution`).
    enforced_on: what the limit was held to: ``"labels"`` (the held-out drop: met unless its
        whole interval lies above the limit) or ``"fidelity"`` (the fidelity loss, INT8 against
        FP32's own detections on every image, :mod:`convert.meter`).
    fidelity_loss / fidelity_low / fidelity_high: that loss in points (0: FP32's detections
        reproduced) with its interval.
    seen_in_training: how many held-out images the checkpoint was trained on (from the
        calibration manifest; ``None``: unknown).
    """

    fp32_map50: float
    map50: float
    drop_points: float
    images: int
    images_from: str = ""
    max_drop_points: float | None = None
    float_layers: list[str] = field(default_factory=list)
    full_int8_map50: float | None = None
    latency_ms: float | None = None
    full_int8_latency_ms: float | None = None
    drop_low: float | None = None
    drop_high: float | None = None
    bootstrap_resamples: int | None = None
    bootstrap_seed: int | None = None
    resolvable_points: float | None = None
    enforced_on: str = "labels"
    fidelity_loss: float | None = None
    fidelity_low: float | None = None
    fidelity_high: float | None = None
    seen_in_training: int | None = None

    @property
    def latency_cost(self) -> float | None:
        """This artifact's latency over full INT8's (``None`` when not measured)."""
        if self.latency_ms is None or not self.full_int8_latency_ms:
            return None
        return self.latency_ms / self.full_int8_latency_ms

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeldOutAccuracy:
        opt = lambda key: None if data.get(key) is None else float(data[key])  # noqa: E731
        return cls(
            fp32_map50=float(data["fp32_map50"]),
            map50=float(data["map50"]),
            drop_points=float(data["drop_points"]),
            images=int(data["images"]),
            images_from=str(data.get("images_from", "")),
            max_drop_points=opt("max_drop_points"),
            float_layers=[str(x) for x in data.get("float_layers") or []],
            full_int8_map50=opt("full_int8_map50"),
            latency_ms=opt("latency_ms"),
            full_int8_latency_ms=opt("full_int8_latency_ms"),
            drop_low=opt("drop_low"),
            drop_high=opt("drop_high"),
            bootstrap_resamples=None if data.get("bootstrap_resamples") is None else int(data["bootstrap_resamples"]),
            bootstrap_seed=None if data.get("bootstrap_seed") is None else int(data["bootstrap_seed"]),
            resolvable_points=opt("resolvable_points"),
            enforced_on=str(data.get("enforced_on", "labels")),
            fidelity_loss=opt("fidelity_loss"),
            fidelity_low=opt("fidelity_low"),
            fidelity_high=opt("fidelity_high"),
            seen_in_training=None if data.get("seen_in_training") is None else int(data["seen_in_training"]),
        )

    def interval_text(self) -> str:
        """``"0.42 [-0.31, 1.20]"`` (the drop alone when no interval was recorded)."""
        if self.drop_low is None or self.drop_high is None:
            return f"{self.drop_points:.2f}"
        return f"{self.drop_points:.2f} [{self.drop_low:.2f}, {self.drop_high:.2f}]"


@dataclass(frozen=True)
class Sidecar:
    """Metadata of one artifact.

    format: the format-table key, e.g. ``"onnx_int8"``.
    runtime: ``"onnxruntime"``, ``"openvino"`` or ``"tflite"``.
    precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
    artifact: the artifact's file name (same folder as the sidecar).
    input_name: the runtime's name of the single image input.
    input: what :func:`ssd.preprocess.preprocess` must produce.
    outputs: ``{"loc": OutputSpec, "conf": OutputSpec}``; ``loc`` is ``(N, P, 4)`` and
        ``conf`` ``(N, P, C)`` logits after dequantization. An end-to-end artifact
        (``postprocess`` set) has its op's outputs instead (:data:`IN_GRAPH_OUTPUTS`).
    postprocess: ``None``: decode + NMS run in the app (:func:`ssd.decode_and_nms`); else they
        run inside the graph with the thresholds recorded here (:class:`InGraphPostprocess`).
    labels: foreground class names; model class ``c >= 1`` is ``labels[c - 1]``.
    labels_sha256: :func:`labels_digest` of the checkpoint's label list; every reader checks
        that ``labels`` still hash to it, so a sidecar whose class names were edited is refused.
    spec: the prior spec (:meth:`ssd.specs.SSDSpec.to_dict`), variances included.
    runtime_hints: how to run it as validated (:class:`RuntimeHints`).
    files: companion files the model needs beside it (OpenVINO ``.bin``, calibration tables):
        plain file name -> sha256.
    validation: the check ``ssd-convert`` ran (``None`` only while it is being written).
    accuracy: the held-out mAP@0.5 drop ``ssd-convert --max-drop`` measured and enforced
        (INT8 only; ``None`` when no limit was asked for), with what stayed float.
    extra: provenance for people (quantization settings, exporter); no code reads it to run.
    """

    format: str
    runtime: str
    precision: str
    artifact: str
    input_name: str
    input: InputSpec
    outputs: dict[str, OutputSpec]
    labels: list[str]
    spec: SSDSpec
    checkpoint_sha256: str
    artifact_sha256: str
    labels_sha256: str
    calibration_sha256: str | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    runtime_hints: RuntimeHints = field(default_factory=RuntimeHints)
    files: dict[str, str] = field(default_factory=dict)
    validation: ValidationRecord | None = None
    accuracy: HeldOutAccuracy | None = None
    postprocess: InGraphPostprocess | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = SIDECAR_VERSION

    @property
    def num_classes(self) -> int:
        """Classes in ``conf`` including background."""
        return len(self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input"] = self.input.to_dict()
        data["spec"] = self.spec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sidecar:
        version = data.get("version")  # every sidecar ever written has one; none: malformed (below)
        if isinstance(version, int) and version < SIDECAR_VERSION:
            raise SidecarError(
                f"sidecar of {data.get('artifact', 'this model')} has version {version}, written by an older ssd-convert; "
                f"this build reads version {SIDECAR_VERSION}: re-run ssd-convert"
            )
        try:
            validation = data.get("validation")
            accuracy = data.get("accuracy")
            return cls(
                format=str(data["format"]),
                runtime=str(data["runtime"]),
                precision=str(data["precision"]),
                artifact=str(data["artifact"]),
                input_name=str(data["input_name"]),
                input=InputSpec.from_dict(data["input"]),
                outputs={k: OutputSpec.from_dict(v) for k, v in data["outputs"].items()},
                labels=[str(x) for x in data["labels"]],
                spec=SSDSpec.from_dict(data["spec"]),
                checkpoint_sha256=str(data["checkpoint_sha256"]),
                artifact_sha256=str(data["artifact_sha256"]),
                labels_sha256=str(data["labels_sha256"]),
                calibration_sha256=data.get("calibration_sha256"),
                tool_versions=dict(data.get("tool_versions", {})),
                runtime_hints=RuntimeHints.from_dict(dict(data.get("runtime_hints") or {})),
                files={str(k): str(v) for k, v in dict(data.get("files") or {}).items()},
                validation=ValidationRecord.from_dict(validation) if validation else None,
                accuracy=HeldOutAccuracy.from_dict(accuracy) if accuracy else None,
                postprocess=InGraphPostprocess.from_dict(data["postprocess"]) if data.get("postprocess") else None,
                extra=dict(data.get("extra", {})),
                version=int(data["version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SidecarError(f"malformed sidecar ({type(exc).__name__}: {exc}); re-run ssd-convert") from None


def labels_digest(labels: list[str] | tuple[str, ...]) -> str:
    """sha256 of a label list (order and exact names), as JSON."""
    return hashlib.sha256(json.dumps([str(x) for x in labels]).encode()).hexdigest()


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(sidecar: Sidecar, artifact: str | Path) -> Path:
    """Write ``artifact``'s sidecar atomically; returns its path."""
    path = sidecar_path(artifact)
    atomic_write_text(path, json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(artifact: str | Path) -> Sidecar:
    """Read and check the sidecar of ``artifact``; raises :class:`SidecarError` on any problem."""
    artifact = Path(artifact)
    path = sidecar_path(artifact)
    if not artifact.exists():
        raise SidecarError(f"model file {artifact} does not exist; check --model or run ssd-convert")
    if not path.exists():
        raise SidecarError(f"{artifact} has no sidecar {path.name}; artifacts from ssd-convert carry one")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SidecarError(f"cannot read sidecar {path}: {exc}; re-run ssd-convert") from None
    if not isinstance(data, dict):
        raise SidecarError(f"sidecar {path} is not a JSON object; re-run ssd-convert")
    sidecar = Sidecar.from_dict(data)
    validate_sidecar(sidecar, artifact)
    return sidecar


def validate_sidecar(sidecar: Sidecar, artifact: str | Path, check_hash: bool = True) -> None:
    """Refuse a sidecar that does not describe ``artifact``; raises :class:`SidecarError`."""
    artifact = Path(artifact)
    where = f"sidecar of {artifact.name}"
    if sidecar.version > SIDECAR_VERSION:
        raise SidecarError(f"{where} has version {sidecar.version}; this build reads up to {SIDECAR_VERSION}")
    if sidecar.artifact != artifact.name:
        raise SidecarError(f"{where} describes {sidecar.artifact!r}, not {artifact.name!r}; keep each sidecar with its model")
    if sidecar.precision not in PRECISIONS:
        raise SidecarError(f"{where}: unknown precision {sidecar.precision!r}")
    if labels_digest(sidecar.labels) != sidecar.labels_sha256:
        raise SidecarError(
            f"{where}: its labels {sidecar.labels} are not the label list it was converted with (labels_sha256 differs); "
            "class names come from the checkpoint: re-run ssd-convert instead of editing the sidecar"
        )
    validate_runtime_hints(sidecar, artifact)
    validate_accuracy(sidecar, artifact)
    if sidecar.postprocess is not None:
        validate_in_graph(sidecar, artifact)
    else:
        validate_head_outputs(sidecar, artifact)
    if check_hash and file_sha256(artifact) != sidecar.artifact_sha256:
        raise SidecarError(f"{artifact} does not match the sha256 in its sidecar; the file was changed or is corrupt")
    validate_companions(sidecar, artifact, check_hash)


def validate_in_graph(sidecar: Sidecar, artifact: Path) -> None:
    """Refuse an in-graph postprocess record a backend could not read as written."""
    where = f"sidecar of {artifact.name}"
    post = sidecar.postprocess
    assert post is not None
    if post.op not in IN_GRAPH_OUTPUTS:
        raise SidecarError(f"{where}: in-graph op {post.op!r} is not one of {sorted(IN_GRAPH_OUTPUTS)}; re-run ssd-convert")
    if set(sidecar.outputs) != set(post.output_keys):
        raise SidecarError(f"{where}: a {post.op} model has outputs {list(post.output_keys)}, the sidecar names "
                           f"{sorted(sidecar.outputs)}; re-run ssd-convert")
    if not (0.0 <= post.score_threshold < 1.0 and 0.0 < post.iou_threshold <= 1.0 and post.max_detections > 0):
        raise SidecarError(f"{where}: in-graph thresholds {post} are out of range; re-run ssd-convert")


def validate_head_outputs(sidecar: Sidecar, artifact: Path) -> None:
    """Raw heads: ``loc (N, P, 4)`` and ``conf (N, P, C)`` matching the spec and labels."""
    where = f"sidecar of {artifact.name}"
    if set(sidecar.outputs) != {"loc", "conf"}:
        raise SidecarError(f"{where}: outputs must be 'loc' and 'conf', got {sorted(sidecar.outputs)}")
    priors = sidecar.spec.num_priors
    loc, conf = sidecar.outputs["loc"].shape, sidecar.outputs["conf"].shape
    if loc[-2:] != (priors, 4):
        raise SidecarError(f"{where}: loc shape {loc} does not match the spec's {priors} priors")
    if conf[-2:] != (priors, sidecar.num_classes):
        raise SidecarError(
            f"{where}: conf shape {conf} does not match {priors} priors x {sidecar.num_classes} classes"
        )


def validate_runtime_hints(sidecar: Sidecar, artifact: Path) -> None:
    """Refuse runtime hints a backend could not apply as written."""
    where = f"sidecar of {artifact.name}"
    hints = sidecar.runtime_hints
    if hints.inference_precision is not None and hints.inference_precision not in INFERENCE_PRECISIONS:
        raise SidecarError(f"{where}: inference precision {hints.inference_precision!r} is not one of {INFERENCE_PRECISIONS}")
    if sidecar.validation is not None and sidecar.validation.kind not in VALIDATION_KINDS:
        raise SidecarError(f"{where}: validation kind {sidecar.validation.kind!r} is not one of {VALIDATION_KINDS}")
    calib = hints.tensorrt_calibration
    if calib is not None:
        for name in calib.companions:
            _plain_name(name, "TensorRT calibration table", artifact.name)
            if name not in sidecar.files:
                raise SidecarError(f"{where}: its TensorRT calibration table {name!r} is not among its checked files; "
                                   "re-run ssd-convert")
        if hints.tensorrt_check is not None:
            raise SidecarError(f"{where}: names both a TensorRT calibration table and a QDQ graph check; TensorRT takes a "
                               "table only for a graph without Q/DQ nodes: re-run ssd-convert")


def validate_accuracy(sidecar: Sidecar, artifact: Path) -> None:
    """Refuse a held-out accuracy record that is inconsistent or breaks the limit it names."""
    acc = sidecar.accuracy
    if acc is None:
        return
    where = f"sidecar of {artifact.name}"
    values = [acc.fp32_map50, acc.map50] + ([acc.full_int8_map50] if acc.full_int8_map50 is not None else [])
    if any(not (0.0 <= v <= 100.0) for v in values):
        raise SidecarError(f"{where}: held-out mAP@0.5 values {values} are not points in [0, 100]; re-run ssd-convert")
    if abs((acc.fp32_map50 - acc.map50) - acc.drop_points) > 1e-6:
        raise SidecarError(f"{where}: held-out drop {acc.drop_points} is not fp32 {acc.fp32_map50} - int8 {acc.map50}; re-run ssd-convert")
    if acc.enforced_on not in ("labels", "fidelity"):
        raise SidecarError(f"{where}: enforced_on {acc.enforced_on!r} is not labels or fidelity; re-run ssd-convert")
    # the limit is broken when the enforced signal is significantly above it (its whole interval
    # is); a record without an interval is judged on its value
    enforced = ((acc.drop_low if acc.drop_low is not None else acc.drop_points) if acc.enforced_on == "labels"
                else (acc.fidelity_low if acc.fidelity_low is not None else acc.fidelity_loss))
    if acc.max_drop_points is not None and enforced is not None and enforced > acc.max_drop_points + 1e-9:
        what = "held-out drop" if acc.enforced_on == "labels" else "fidelity loss"
        raise SidecarError(f"{where}: {what} is significantly above its limit {acc.max_drop_points:g} "
                           f"(interval from {enforced:.2f} points); re-run ssd-convert")
    if acc.images < 1:
        raise SidecarError(f"{where}: held-out accuracy measured on {acc.images} images; re-run ssd-convert")


def validate_companions(sidecar: Sidecar, artifact: Path, check_hash: bool = True) -> None:
    """Check the files a model needs beside it (:attr:`Sidecar.files`: name -> sha256), e.g.
    OpenVINO's ``.bin`` weights or a TensorRT calibration table: plain names, present, sha256."""
    for name, digest in sidecar.files.items():
        _plain_name(name, "companion", artifact.name)
        companion = artifact.with_name(name)
        if not companion.is_file():
            raise SidecarError(f"{artifact.name} needs {name} next to it; copy it along with the model")
        if check_hash and file_sha256(companion) != digest:
            raise SidecarError(f"{name} (beside {artifact.name}) does not match the sha256 in the sidecar; it was changed or is corrupt")

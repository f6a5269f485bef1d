"""What every exporter receives: the source model, the calibration set, options, scratch space.

The FP32 ONNX graph is the hub (as in Ultralytics' exporter): it is exported once per run
(:meth:`ExportContext.hub_onnx`) and ONNX Runtime, OpenVINO and the TensorRT table start
from it. TFLite starts from the PyTorch model (litert-torch traces it with torch.export).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from calibration.sets import CalibrationSet
from convert.errors import ConvertError
from convert.int8_default import with_defaults
from convert.meter import Meter, fp32_outputs
from convert.onnx_export import export_onnx
from convert.source import SourceModel
from convert.validate import Tolerances
from edge_app.backends.timed import HeadOutputs

if TYPE_CHECKING:
    from convert.fallback import LayerScore

Log = Callable[[str], None]

# backend -> calibration methods it offers; the first is the default (see DEFAULT_METHODS).
CALIBRATION_METHODS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("minmax", "percentile", "entropy", "distribution"),
    "tensorrt": ("minmax", "percentile", "entropy"),
    "openvino": ("minmax", "mean_minmax", "percentile", "histogram"),
    "tflite": ("histogram", "minmax"),
}
# Measured on SSDLite320 and the tiny model (docs/BENCHMARKS.md, "Calibration methods").
DEFAULT_METHODS: dict[str, str] = {
    "onnxruntime": "minmax",
    "tensorrt": "entropy",
    "openvino": "minmax",
    "tflite": "histogram",
}


def parse_methods(items: list[str] | None) -> dict[str, str]:
    """``["onnxruntime=entropy", "openvino=histogram"]`` -> dict; unknown names raise ConvertError."""
    methods: dict[str, str] = {}
    for item in items or []:
        backend, sep, method = item.partition("=")
        backend, method = backend.strip().lower(), method.strip().lower()
        if not sep or backend not in CALIBRATION_METHODS:
            raise ConvertError(f"--calib-method {item!r}: use BACKEND=METHOD with BACKEND one of {sorted(CALIBRATION_METHODS)}")
        if method not in CALIBRATION_METHODS[backend]:
            raise ConvertError(f"--calib-method {item!r}: {backend} offers {', '.join(CALIBRATION_METHODS[backend])}")
        methods[backend] = method
    return methods


@dataclass(frozen=True)
class MaxDrop:
    """``--max-drop``: points of mAP@0.5 (0-100, the unit of ``ssd-compare --max-drop``) an INT8
    artifact may lose; checked once, here. ``float()`` and format specs give the points."""

    points: float

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.points) <= 100.0:
            raise ConvertError(f"--max-drop is in points of mAP@0.5 (0-100, as in ssd-compare), got {self.points:g}")
        object.__setattr__(self, "points", float(self.points))

    @property
    def fraction(self) -> float:
        """The limit as a fraction of mAP (points / 100), for tools that take one."""
        return self.points / 100.0

    def __float__(self) -> float:
        return self.points

    def __format__(self, spec: str) -> str:
        return format(self.points, spec)


def require_holdout(calib: CalibrationSet | None) -> CalibrationSet:
    """``calib`` when it has held-out images; else the one :class:`ConvertError` saying how to get them."""
    if calib is None or calib.holdout is None or len(calib.holdout) == 0:
        where = calib.root if calib is not None else "no calibration set"
        raise ConvertError(f"--max-drop (and --sensitivity) needs held-out images; {where} has none "
                           "(re-run ssd-calibrate with --holdout N, N > 0)")
    return calib


@dataclass(frozen=True)
class ConvertOptions:
    """Knobs of a conversion run.

    opset: ONNX opset (>= 17; 17 is what TensorRT 8.5/8.6 on JetPack 5 parse).
    dynamic_batch: ONNX-derived artifacts take any batch size (TFLite stays batch 1).
    max_drop: with a value, every INT8 artifact may lose at most this many points of mAP@0.5
        (0-100, the unit of ``ssd-compare --max-drop``) on the calibration set's held-out
        images, measured by the project's own evaluation (:mod:`convert.fallback`) and
        recorded in the sidecar with its 95 % interval. An artifact significantly above the
        limit gets layer groups left in float where they measurably help (``fallback``,
        :mod:`convert.fallback`), or fails by name.
    max_drop_on: what ``max_drop`` is held to: ``"labels"`` (the held-out mAP@0.5 drop; met
        unless its whole 95 % interval is above the limit) or ``"fidelity"`` (INT8's detections
        scored against FP32's own on every image, :mod:`convert.meter`; for held-out sets too
        small to resolve the limit).
    fallback: with ``max_drop``, leave layers float until the limit is met (else fail at once).
    max_float_layers: the fallback gives up after this many float layers (``None``: all).
    calib_methods: backend -> method (see :data:`CALIBRATION_METHODS`); missing -> default.
    calib_limit: use at most this many calibration images (``None``: all).
    ort_activations: ONNX Runtime INT8 activation type, ``"uint8"`` (U8S8, default) or ``"int8"``
        (S8S8). Measured on AVX-512 VNNI: with S8S8 ONNX Runtime leaves every depthwise
        convolution in float between Dequantize/Quantize pairs (SSDLite INT8 ran 1.5x *slower*
        than FP32); with U8S8 all convolutions become QLinearConv (1.9x faster than FP32).
    full_integer: INT8 formats quantize every layer, the class-logit convolutions included
        (:mod:`convert.int8_default`; default False: ONNX Runtime and TFLite INT8 leave them float,
        which keeps the score ranking). For targets that must run every op in integer (NPU, Edge TPU).
    validate_images: calibration images used for the post-write check of every artifact.
    threads: intra-op threads for validation runs (``None``: runtime default).
    verbose: let the tools print their own logs instead of capturing them.
    """

    opset: int = 17
    dynamic_batch: bool = False
    max_drop: MaxDrop | None = None
    max_drop_on: str = "labels"
    fallback: bool = True
    max_float_layers: int | None = None
    calib_methods: dict[str, str] = field(default_factory=dict)
    calib_limit: int | None = None
    ort_activations: str = "uint8"
    full_integer: bool = False
    validate_images: int = 16
    threads: int | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    verbose: bool = False
    #: the :mod:`ssd.postprocess` preset the end-to-end formats bake into the graph (``LIVE``, ``EVAL``)
    in_graph: str = "LIVE"

    def __post_init__(self) -> None:
        if self.max_drop is not None and not isinstance(self.max_drop, MaxDrop):
            object.__setattr__(self, "max_drop", MaxDrop(float(self.max_drop)))

    def method(self, backend: str) -> str:
        return self.calib_methods.get(backend, DEFAULT_METHODS[backend])


@dataclass
class RunState:
    """What one conversion run computes on first use and every variant of its context shares
    (``dataclasses.replace`` of an :class:`ExportContext` keeps the same state)."""

    #: the FP32 ONNX hub graph (:meth:`ExportContext.hub_onnx`)
    hub_onnx: Path | None = None
    #: PyTorch ``(loc, conf)`` on the validation frames (:meth:`ExportContext.reference`)
    reference: list[HeadOutputs] | None = None
    #: the held-out meter (:meth:`ExportContext.meter`)
    meter: Meter | None = None
    #: every candidate layer quantized alone, most harmful first (:func:`convert.fallback.rank_layers`)
    layer_ranking: list[LayerScore] | None = None
    #: end-to-end format -> its staged raw-head twin, for its check (:mod:`convert.endtoend`)
    e2e_twins: dict[str, Path] = field(default_factory=dict)


@dataclass
class ExportContext:
    """Shared state of one conversion run (one per ``convert.export`` call)."""

    source: SourceModel
    calib: CalibrationSet | None
    options: ConvertOptions
    work: Path
    log: Log = print
    state: RunState = field(default_factory=RunState)
    #: layers (PyTorch module paths, :mod:`convert.layers`) the INT8 exporters leave in float
    float_layers: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        return self.source.image_size

    def int8_float_layers(self, fmt: str) -> tuple[str, ...]:
        """The layers ``fmt``'s exporter leaves float: the format's default ones
        (:func:`convert.int8_default.default_float_layers`) and :attr:`float_layers`."""
        return with_defaults(self.source.model, fmt, self.options.full_integer, self.float_layers)

    def require_calibration(self, fmt: str) -> CalibrationSet:
        if self.calib is None:
            raise ConvertError(f"{fmt} needs a calibration set; pass --calib calibration/sets/NAME (make calibrate)")
        return self.calib

    def calibration_batches(self, layout: str = "NCHW", dtype: str = "float32") -> Iterator[np.ndarray]:
        """Batch-1 float pixel inputs from the calibration set (``calib_limit`` applies)."""
        calib = self.require_calibration("this format")
        return calib.batches(layout, dtype, limit=self.options.calib_limit)

    def calibration_inputs(self) -> np.ndarray:
        """The stored ``(N, 3, S, S)`` uint8 calibration inputs (memory-mapped; ``calib_limit`` applies)."""
        calib = self.require_calibration("this format")
        return calib.inputs[: self.num_calibration()]

    def num_calibration(self) -> int:
        calib = self.require_calibration("this format")
        n = len(calib)
        return n if self.options.calib_limit is None else min(n, self.options.calib_limit)

    def validation_frames(self) -> list[np.ndarray]:
        """BGR frames at model size for the post-write check (the first ``validate_images``)."""
        calib = self.require_calibration("validation")
        return list(calib.frames_bgr(limit=self.options.validate_images))

    def require_holdout(self) -> CalibrationSet:
        """The calibration set, which must have held-out images (:func:`require_holdout`)."""
        return require_holdout(self.calib)

    def reference(self) -> list[HeadOutputs]:
        """PyTorch ``(loc, conf)`` for each validation frame (computed once)."""
        if self.state.reference is None:
            calib = self.require_calibration("validation")
            inputs = list(calib.batches("NCHW", "float32", limit=self.options.validate_images))
            self.state.reference = fp32_outputs(self.source, inputs, self.options.threads, self.log)
        return self.state.reference

    def meter(self) -> Meter:
        """The run's held-out meter (:class:`convert.meter.Meter`, made once)."""
        if self.state.meter is None:
            self.state.meter = Meter(self)
        return self.state.meter

    def hub_onnx(self) -> Path:
        """The FP32 ONNX export (slimmed, checked), made on first use and reused."""
        if self.state.hub_onnx is None:
            path = self.work / "hub_fp32.onnx"
            self.log("  exporting the FP32 ONNX hub graph (torch.onnx dynamo exporter + onnxslim)")
            export_onnx(self.source.model, self.image_size, path, opset=self.options.opset,
                        dynamic_batch=self.options.dynamic_batch, verbose=self.options.verbose)
            self.state.hub_onnx = path
        return self.state.hub_onnx

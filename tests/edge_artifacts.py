"""Tiny SSD artifacts for the edge-app tests (and the edge-app benchmark), made with torch.

``get_artifacts()`` builds them once per process in a temporary folder:
ONNX FP32, OpenVINO IR FP32, TFLite FP32 (NHWC input), ONNX INT8 (static QDQ), OpenVINO
INT8 (IR of the QDQ model) and TFLite INT8 (PT2E, int8 outputs carrying the model's own
quantization parameters), each with a sidecar written by :func:`ssd.sidecar.write_sidecar`.

The model is ``build_model("tiny", 4)`` with a fixed seed whose prediction heads are
rescaled on a few synthetic frames, so that an untrained network still gives a few dozen
content-dependent detections per frame above a 0.5 score (a raw random init gives none).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.identity import stamp_identity
from edge_app.sources.synthetic import SyntheticScene
from ssd.identity import identity_of
from ssd.postprocess import Detections, decode_and_nms
from ssd.preprocess import InputSpec, preprocess
from ssd.priors import default_boxes
from ssd.sidecar import OutputSpec, RuntimeHints, Sidecar, file_sha256, labels_digest, write_sidecar
from ssd.specs import TINY, SSDSpec

NUM_CLASSES = 4
LABELS = ["square", "disc", "triangle"]
SEED = 0
FRAME_W, FRAME_H = 160, 120
SCORE = 0.5


def calibration_frames(n: int = 8, width: int = FRAME_W, height: int = FRAME_H, seed: int = 1) -> list[np.ndarray]:
    """BGR frames of a synthetic scene (a different seed than the test video)."""
    scene = SyntheticScene(width, height, objects=4, seed=seed)
    return [scene.render(i * 5) for i in range(n)]


def make_model(seed: int = SEED, spec: SSDSpec = TINY, width: int = 32, bg_bias: float = 6.5):
    """``build_model("tiny", 4)`` in eval mode with heads normalized to give detections.

    Each head output channel is shifted and scaled (through its conv's weight and bias) to
    zero mean and a fixed spread on calibration frames (conf 1.5, loc 0.5); background
    logits get ``+bg_bias``. Deterministic for a seed.
    """
    import torch

    from train.models import build_model

    torch.manual_seed(seed)
    model = build_model("tiny", NUM_CLASSES, spec=spec, width=width).eval()
    frames = calibration_frames(8, seed=seed + 1)
    x = torch.from_numpy(np.concatenate([preprocess(f, InputSpec(spec.image_size, spec.image_size)) for f in frames]))
    heads = list(model.conf_heads) + list(model.loc_heads)
    outs: dict[int, torch.Tensor] = {}
    hooks = [h.register_forward_hook(lambda _m, _i, o, k=k: outs.__setitem__(k, o)) for k, h in enumerate(heads)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    n_conf = len(model.conf_heads)
    with torch.no_grad():
        for k, head in enumerate(heads):
            out = outs[k]
            mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp_min(1e-6)
            scale = (1.5 if k < n_conf else 0.5) / std
            head.weight.mul_(scale.view(-1, 1, 1, 1))
            head.bias.copy_((head.bias - mean) * scale)
            if k < n_conf:
                head.bias.view(-1, NUM_CLASSES)[:, 0] += bg_bias
    return model


def reference_detections(model, frames: list[np.ndarray], score: float = SCORE, **kwargs) -> list[Detections]:
    """PyTorch's head outputs on ``frames`` through :func:`ssd.decode_and_nms` (the ground truth)."""
    import torch

    spec: SSDSpec = model.spec
    x = torch.from_numpy(np.concatenate([preprocess(f, InputSpec(spec.image_size, spec.image_size)) for f in frames]))
    with torch.no_grad():
        loc, conf = model(x)
    return decode_and_nms(loc.numpy(), conf.numpy(), default_boxes(spec), variances=spec.variances,
                          score_threshold=score, **kwargs)


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """MJPG in AVI: decodable by every OpenCV build."""
    import cv2

    path = Path(path)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video as OpenCV decodes it (what the app sees)."""
    import cv2

    cap = cv2.VideoCapture(os.fspath(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def make_sidecar(artifact: Path, fmt: str, runtime: str, precision: str, input_name: str, input_spec: InputSpec,
                 outputs: dict[str, OutputSpec], spec: SSDSpec = TINY, extra: dict | None = None,
                 hints: RuntimeHints | None = None) -> Path:
    """A sidecar as ``ssd-convert`` writes it (float OpenVINO IR gets the ``f32`` precision hint)."""
    if hints is None:
        hints = RuntimeHints(inference_precision="f32" if runtime == "openvino" and precision != "int8" else None)
    sidecar = Sidecar(
        format=fmt, runtime=runtime, precision=precision, artifact=artifact.name, input_name=input_name,
        input=input_spec, outputs=outputs, labels=list(LABELS), spec=spec, checkpoint_sha256="0" * 64,
        labels_sha256=labels_digest(list(LABELS)),
        artifact_sha256="", calibration_sha256=None,
        tool_versions={"test": "edge_artifacts"}, runtime_hints=hints, extra=dict(extra or {}),
    )
    stamp_identity(artifact, identity_of(sidecar))  # as ssd-convert does: the file carries its identity
    files = {artifact.with_suffix(".bin").name: file_sha256(artifact.with_suffix(".bin"))} if artifact.suffix == ".xml" else {}
    return write_sidecar(dataclasses.replace(sidecar, artifact_sha256=file_sha256(artifact), files=files), artifact)


def _float_outputs(loc_name: str, conf_name: str, spec: SSDSpec = TINY) -> dict[str, OutputSpec]:
    p = spec.num_priors
    return {"loc": OutputSpec(loc_name, (1, p, 4)), "conf": OutputSpec(conf_name, (1, p, NUM_CLASSES))}


def export_onnx(model, path: Path, dynamic_batch: bool = False) -> Path:
    import torch

    size = model.spec.image_size
    axes = {"images": {0: "N"}, "loc": {0: "N"}, "conf": {0: "N"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), os.fspath(path), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["loc", "conf"], dynamic_axes=axes)
    make_sidecar(path, "onnx_fp32", "onnxruntime", "fp32", "images", InputSpec(size, size), _float_outputs("loc", "conf", model.spec), model.spec)
    return path


def quantize_onnx(fp32: Path, path: Path, frames: list[np.ndarray], spec: SSDSpec = TINY) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    size = spec.image_size

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"images": preprocess(f, InputSpec(size, size))} for f in frames])

        def get_next(self):
            return next(self._it, None)

    quantize_static(os.fspath(fp32), os.fspath(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    make_sidecar(path, "onnx_int8", "onnxruntime", "int8", "images", InputSpec(size, size), _float_outputs("loc", "conf", spec), spec)
    return path


def export_openvino(onnx_path: Path, path: Path, precision: str, spec: SSDSpec = TINY) -> Path:
    import openvino as ov

    ov.save_model(ov.convert_model(os.fspath(onnx_path)), os.fspath(path), compress_to_fp16=False)
    size = spec.image_size
    make_sidecar(path, f"openvino_{precision}", "openvino", precision, "images", InputSpec(size, size),
                 _float_outputs("loc", "conf", spec), spec)
    return path


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress to stdout/stderr; keep test output readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _tflite_outputs(path: Path) -> list[tuple[str, str, tuple[int, ...], str, float | None, int | None]]:
    """``(signature key, tensor name, shape, dtype, scale, zero point)`` per output, in signature order."""
    from edge_app.backends.tflite_backend import make_interpreter

    interp, _ = make_interpreter(path)
    runner = interp.get_signature_runner(next(iter(interp.get_signature_list())))
    rows = []
    for key, d in sorted(runner.get_output_details().items()):
        scale, zp = d["quantization"]
        rows.append((key, d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name,
                     float(scale) if scale else None, int(zp) if scale else None))
    return rows


def export_tflite(model, path: Path) -> Path:
    """FP32 TFLite with an NHWC input (``litert_torch.to_channel_last_io``); sidecar names the tensors."""
    import litert_torch
    import torch

    size = model.spec.image_size
    nhwc = litert_torch.to_channel_last_io(model, args=[0])
    with _quiet():
        litert_torch.convert(nhwc, (torch.zeros(1, size, size, 3),)).export(os.fspath(path))
    (_, loc_name, loc_shape, *_), (_, conf_name, conf_shape, *_) = _tflite_outputs(path)
    input_spec = InputSpec(size, size, layout="NHWC")
    make_sidecar(path, "tflite_fp32", "tflite", "fp32", "serving_default_args_0", input_spec,
                 {"loc": OutputSpec(loc_name, loc_shape), "conf": OutputSpec(conf_name, conf_shape)}, model.spec)
    return path


def export_tflite_int8(model, path: Path, frames: list[np.ndarray]) -> Path:
    """PT2E static INT8 TFLite: float NHWC input quantized inside, int8 outputs with their own params.

    The outputs pass through a multiply by a constant 1 so the quantizer gives them real
    output observers (a bare ``cat`` output gets a placeholder scale of 2**-12).
    The sidecar names outputs by signature key (``output_0``), the other naming a sidecar may use.
    """
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    size = model.spec.image_size

    class NHWC(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("one", torch.ones(1))

        def forward(self, x):
            loc, conf = self.inner(x.permute(0, 3, 1, 2))
            return loc * self.one, conf * self.one

    wrapper = NHWC(model).eval()
    sample = torch.zeros(1, size, size, 3)
    with _quiet():
        graph = torch.export.export(wrapper, (sample,)).module()
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
        graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
        for frame in frames:
            graph(torch.from_numpy(preprocess(frame, InputSpec(size, size, layout="NHWC"))))
        graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
        litert_torch.convert(graph, (sample,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)).export(
            os.fspath(path)
        )
    (lkey, _, lshape, ldtype, ls, lz), (ckey, _, cshape, cdtype, cs, cz) = _tflite_outputs(path)
    outputs = {"loc": OutputSpec(lkey, lshape, ldtype, ls, lz), "conf": OutputSpec(ckey, cshape, cdtype, cs, cz)}
    make_sidecar(path, "tflite_int8", "tflite", "int8", "serving_default_args_0", InputSpec(size, size, layout="NHWC"),
                 outputs, model.spec)
    return path


@dataclass(frozen=True)
class Artifacts:
    folder: Path
    onnx_fp32: Path
    onnx_int8: Path
    openvino_fp32: Path
    openvino_int8: Path
    tflite_fp32: Path
    tflite_int8: Path
    onnx_dynamic: Path
    openvino_dynamic: Path
    video: Path

    def all(self) -> dict[str, Path]:
        """The six static artifacts by name (``onnx_fp32`` ... ``tflite_int8``)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("folder", "video", "onnx_dynamic", "openvino_dynamic")}


def build_artifacts(folder: Path, tflite: bool = True) -> Artifacts:
    """Every artifact (and dynamic-batch ONNX/IR variants) plus a 12-frame synthetic MJPG video, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = make_model()
    calib = calibration_frames(8)
    onnx_fp32 = export_onnx(model, folder / "tiny_fp32.onnx")
    onnx_int8 = quantize_onnx(onnx_fp32, folder / "tiny_int8.onnx", calib)
    ov_fp32 = export_openvino(onnx_fp32, folder / "tiny_fp32.xml", "fp32")
    ov_int8 = export_openvino(onnx_int8, folder / "tiny_int8.xml", "int8")
    onnx_dyn = export_onnx(model, folder / "tiny_dynamic.onnx", dynamic_batch=True)
    ov_dyn = export_openvino(onnx_dyn, folder / "tiny_dynamic.xml", "fp32")
    # OpenVINO conversions first: convert_model's telemetry forks a process, which must not
    # happen after litert-torch has started JAX's threads
    tfl_fp32 = export_tflite(model, folder / "tiny_fp32.tflite") if tflite else folder / "missing.tflite"
    tfl_int8 = export_tflite_int8(model, folder / "tiny_int8.tflite", calib) if tflite else folder / "missing.tflite"
    scene = SyntheticScene(FRAME_W, FRAME_H, objects=4, seed=SEED)
    video = write_video(folder / "synthetic.avi", [scene.render(i) for i in range(12)], fps=10.0)
    return Artifacts(folder, onnx_fp32, onnx_int8, ov_fp32, ov_int8, tfl_fp32, tfl_int8, onnx_dyn, ov_dyn, video)


_CACHE: dict[str, Artifacts] = {}


def get_artifacts() -> Artifacts:
    """The session's artifacts, built on first use in a temporary folder removed at exit."""
    if "all" not in _CACHE:
        folder = Path(tempfile.mkdtemp(prefix="edge_artifacts_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _CACHE["all"] = build_artifacts(folder)
    return _CACHE["all"]


_MODEL: dict[str, object] = {}


def get_model():
    """The torch model the artifacts were exported from (same seed, same head scaling)."""
    if "model" not in _MODEL:
        _MODEL["model"] = make_model()
    return _MODEL["model"]

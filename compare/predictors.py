"""What ``ssd-compare`` runs: the checkpoint in PyTorch, and artifacts through the edge app's backends.

Every predictor maps a batch made by :func:`ssd.preprocess.preprocess` for its
``input_spec`` to raw head outputs ``loc (N, P, 4)``, ``conf (N, P, C)`` float32. An
artifact runs through :func:`edge_app.backends.open_backend` on the CPU: the same backend,
sidecar checks, precision hint and dequantization as ``ssd-edge`` and as ``ssd-convert``'s
validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ssd.preprocess import InputSpec
from ssd.sidecar import Sidecar
from ssd.specs import SSDSpec


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


class TorchPredictor:
    """The checkpoint in PyTorch FP32 on the CPU: the reference row."""

    runtime = "pytorch"
    precision = "fp32"

    def __init__(self, checkpoint: str | Path, threads: int) -> None:
        import torch

        from train.checkpoint import load_model
        from train.evaluate import checkpoint_eval_settings

        torch.set_num_threads(threads)
        loaded = load_model(checkpoint)
        self._torch = torch
        self.model = loaded.model.eval()
        self.labels = loaded.labels
        self.spec = loaded.spec
        self.name = "pytorch_fp32"
        self.path = Path(checkpoint)
        self.sha256 = loaded.sha256
        self.eval_settings = checkpoint_eval_settings(loaded.checkpoint)
        size = loaded.spec.image_size
        self.input_spec = InputSpec(size, size, layout="NCHW", dtype="float32", color="RGB")

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            loc, conf = self.model(self._torch.from_numpy(batch))
        return loc.numpy(), conf.numpy()


class ArtifactPredictor:
    """An artifact run by the edge app's backend for its suffix, on the CPU."""

    def __init__(self, path: Path, threads: int) -> None:
        from edge_app.backends.timed import open_timed

        self.backend = open_timed(path, threads)  # the CPU at fixed threads, as every timed run
        sidecar = self.backend.sidecar
        self.name = sidecar.format
        self.runtime = sidecar.runtime
        self.executed_by = self.backend.name
        self.precision, self.note = executed_precision(sidecar, self.executed_by)
        #: decode + NMS inside the graph: its rows are scored at its own thresholds, not EVAL's
        self.in_graph = sidecar.postprocess
        if self.in_graph is not None:
            post = self.in_graph
            self.note = "; ".join(filter(None, [self.note, (
                f"decode + NMS in the graph ({post.op}) at {post.preset} thresholds: score > {post.score_threshold:g}, "
                f"at most {post.max_detections} detections (not EVAL's): compare it with its raw twin at the same thresholds")]))
        self.path = path
        self.spec = sidecar.spec
        self.labels = sidecar.labels
        self.checkpoint_sha256 = sidecar.checkpoint_sha256
        self.held_out = sidecar.accuracy  # ssd-convert --max-drop: held-out drop, float layers, latency cost
        # INT8: whether the class-logit convolutions stayed float (convert.int8_default), from the sidecar
        self.class_logits = (sidecar.extra.get("quantization") or {}).get("class_logits")
        self.input_spec = self.backend.input_spec

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.infer(batch)

    def close(self) -> None:
        self.backend.close()


def executed_precision(sidecar: Sidecar, executed_by: str) -> tuple[str, str | None]:
    """The precision a row really ran in, and why it differs from the sidecar's.

    A TensorRT calibration artifact is an FP32 graph plus an INT8 table that only TensorRT
    reads: without the execution provider its sidecar names it runs in FP32, and counting it
    as INT8 would report a zero INT8 loss that nobody measured.
    A QDQ artifact made for TensorRT carries its own scales and is INT8 under every provider.
    """
    provider = sidecar.runtime_hints.execution_provider
    table = sidecar.runtime_hints.tensorrt_calibration
    if sidecar.precision == "int8" and table is not None and provider and provider not in executed_by:
        return "fp32", f"INT8 needs {provider}; ran the FP32 graph on {executed_by}"
    return sidecar.precision, None

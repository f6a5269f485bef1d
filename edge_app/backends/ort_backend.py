""".onnx artifacts through ONNX Runtime: TensorRT, then CUDA, then CPU, by what is installed.

On a Jetson, ``onnxruntime-gpu`` (from the Jetson Zoo / JetPack wheels) offers the
TensorRT and CUDA execution providers; pip's ``onnxruntime`` offers the CPU one. An INT8
artifact runs in TensorRT with INT8 enabled. A QDQ model carries its own scales; a model
without Q/DQ nodes needs the calibration table of its sidecar's
:attr:`ssd.sidecar.RuntimeHints.tensorrt_calibration` (a checked file next to the artifact,
with its ``native`` flag); TensorRT refuses a table for a model with Q/DQ nodes. The
sidecar's ``runtime_hints.provider_options`` are added to the TensorRT provider's options
(never replacing the ones derived here).
Engines are cached because building them takes minutes on a Jetson, in a folder keyed by the
artifact's sha256 (:func:`engine_cache_dir`) next to the artifact (or in ``cache_dir``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.backends.base import Backend, BackendOptions, check_input, match_outputs
from edge_app.backends.endtoend import output_order, pack
from edge_app.backends.identity import check_file_identity
from edge_app.errors import BackendError, require
from ssd.sidecar import Sidecar, SidecarError, file_sha256

log = logging.getLogger("edge_app.backends")

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def engine_cache_dir(sidecar: Sidecar, artifact: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where TensorRT engines of ``artifact`` are cached: ``<root>/trt_cache/<stem>-<key>``.

    ``root`` is ``cache_dir`` or the artifact's folder; ``key`` is the first 16 hex digits of
    the artifact's sha256 (from its checked sidecar), mixed with its companions' (the
    calibration table) when it has any. ONNX Runtime names its engines by the model's file
    name, tensor names and versions, not its weights: a re-exported model (or a new table)
    in the same place would load the old engine; a folder per content never does.
    """
    key = sidecar.artifact_sha256
    if sidecar.files:
        parts = [sidecar.artifact_sha256, *(f"{name}={digest}" for name, digest in sorted(sidecar.files.items()))]
        key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    root = Path(cache_dir) if cache_dir else artifact.parent
    return root / "trt_cache" / f"{artifact.stem}-{key[:16]}"


def tensorrt_ready(sidecar: Sidecar) -> bool:
    """Whether TensorRT can build the artifact as validated: a float graph, a graph with a
    calibration table, or a QDQ graph whose static TensorRT check passed. An INT8 QDQ graph
    without that check (``onnx_int8``: asymmetric uint8 activations) is not."""
    hints = sidecar.runtime_hints
    if sidecar.precision != "int8" or hints.tensorrt_calibration is not None:
        return True
    return hints.tensorrt_check is not None and hints.tensorrt_check.passed


def select_providers(
    available: list[str], device: str, sidecar: Sidecar, artifact: Path, cache_dir: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers in priority order, with their options (a pure function of its
    arguments: it reads no file; :func:`prepare_tensorrt_cache` makes the cache folder).

    ``AUTO`` (or ``GPU``) takes TensorRT, CUDA and CPU as available; ``TENSORRT`` and
    ``CUDA`` insist on that provider (CPU stays as the fallback for unsupported nodes);
    ``CPU`` takes only the CPU. Raises :class:`BackendError` when the asked-for provider is
    not installed, or ``TENSORRT`` is asked for an INT8 graph TensorRT cannot import
    (:func:`tensorrt_ready`; ``AUTO`` then skips TensorRT).

    TensorRT options: engine cache on, in :func:`engine_cache_dir`; FP16 for FP16 and INT8
    artifacts; INT8 for INT8 ones, with the sidecar's calibration table (read by ONNX Runtime
    from ``trt_engine_cache_path/<table>``) for a graph without Q/DQ nodes, and no table for
    a QDQ graph (its scales are in the graph; TensorRT refuses a table for it).
    """
    device = device.upper()
    if device not in ("AUTO", "GPU", "CPU", "CUDA", "TENSORRT"):
        raise BackendError(f"ONNX Runtime has no device {device!r}; use AUTO, CPU, CUDA or TENSORRT")
    wanted = {"AUTO": [TRT, CUDA], "GPU": [TRT, CUDA], "CUDA": [CUDA], "TENSORRT": [TRT], "CPU": []}[device]
    if device in ("CUDA", "TENSORRT") and wanted[0] not in available:
        raise BackendError(
            f"--device {device} needs ONNX Runtime's {wanted[0]}, but this onnxruntime offers {available}; "
            "hint: install onnxruntime-gpu (on a Jetson, the wheel for your JetPack from the Jetson Zoo)"
        )
    if TRT in wanted and not tensorrt_ready(sidecar):
        if device == "TENSORRT":
            raise BackendError(
                f"{artifact.name} ({sidecar.format}) is an INT8 QDQ graph without a passing TensorRT check (TensorRT needs "
                "symmetric int8, zero point 0); run model_tensorrt_qdq.onnx or model_tensorrt_calib.onnx from "
                "ssd-convert --target jetson"
            )
        wanted = [name for name in wanted if name != TRT]
    providers: list[tuple[str, dict[str, Any]]] = []
    for name in wanted:
        if name not in available:
            continue
        if name == TRT:
            opts: dict[str, Any] = {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(engine_cache_dir(sidecar, artifact, cache_dir)),
                "trt_fp16_enable": sidecar.precision in ("fp16", "int8"),
            }
            if sidecar.precision == "int8":
                opts["trt_int8_enable"] = True
                calib = sidecar.runtime_hints.tensorrt_calibration
                if calib is not None:
                    opts["trt_int8_calibration_table_name"] = calib.table
                    opts["trt_int8_use_native_calibration_table"] = calib.native
            if sidecar.runtime_hints.execution_provider in (None, TRT):
                for key, value in sidecar.runtime_hints.provider_options.items():
                    opts.setdefault(key, value)  # never over what the backend derives (cache path, table)
            providers.append((TRT, opts))
        elif name == CUDA:
            providers.append((CUDA, {"device_id": 0}))
    providers.append((CPU, {}))
    return providers


def prepare_tensorrt_cache(providers: list[tuple[str, dict[str, Any]]], sidecar: Sidecar, artifact: Path) -> None:
    """Make the TensorRT engine cache folder of ``providers`` and put the calibration table
    there (ONNX Runtime reads it relative to ``trt_engine_cache_path``): a copy of the checked
    table beside the artifact, replaced when its sha256 differs. No TensorRT provider: nothing."""
    for name, opts in providers:
        if name != TRT:
            continue
        cache = Path(opts["trt_engine_cache_path"])
        cache.mkdir(parents=True, exist_ok=True)
        table = opts.get("trt_int8_calibration_table_name")
        if not table:
            continue
        src = artifact.parent / table
        if not src.is_file():
            raise SidecarError(
                f"sidecar of {artifact.name} names TensorRT calibration table {table!r}, "
                f"which is not next to the artifact; copy it there or re-run ssd-convert"
            )
        dst = cache / table
        if dst.is_file() and file_sha256(dst) == sidecar.files.get(table, file_sha256(src)):
            continue
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def create_session(
    model: str | os.PathLike | bytes, threads: int | None = None, providers: list[tuple[str, dict[str, Any]]] | None = None
) -> Any:
    """An ``onnxruntime.InferenceSession`` as the backend makes it (the one place the project
    makes one): full graph optimization, sequential execution, one inter-op thread,
    ``threads`` intra-op threads, no spinning, and ``providers`` (default: the CPU).

    ``model`` is a path or the serialized model. Raises :class:`BackendError` when ONNX
    Runtime is missing or refuses the model.
    """
    ort = require("onnxruntime", "a .onnx model needs ONNX Runtime: pip install 'ssd-edge[edge]' (or onnxruntime-gpu)")
    providers = providers or [(CPU, {})]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    # idle pool threads sleep instead of spinning: the app's capture and postprocessing
    # threads need those cores (on a 4-core Pi as much as here)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, sess_options=so, providers=[p for p, _ in providers],
                                    provider_options=[o for _, o in providers])
    except Exception as exc:  # onnxruntime raises its own exception types
        name = "the model" if isinstance(model, bytes) else Path(model).name
        raise BackendError(f"ONNX Runtime cannot load {name}: {str(exc).splitlines()[0]}") from None


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime session over one .onnx artifact."""

    def __init__(self, path: Path, sidecar: Sidecar, options: BackendOptions) -> None:
        super().__init__(path, sidecar, options)
        ort = require("onnxruntime", "a .onnx model needs ONNX Runtime: pip install 'ssd-edge[edge]' (or onnxruntime-gpu)")
        providers = select_providers(ort.get_available_providers(), options.device, sidecar, path, options.cache_dir)
        prepare_tensorrt_cache(providers, sidecar, path)
        self.session = create_session(path, options.threads, providers)
        # first: a forged sidecar is refused by name, before any shape check could trip over it
        check_file_identity(self.session.get_modelmeta().custom_metadata_map, sidecar, path)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise SidecarError(f"{path.name} has {len(inputs)} inputs; an SSD artifact has one image input")
        inp = inputs[0]
        if inp.name != sidecar.input_name:
            raise SidecarError(
                f"sidecar of {path.name} names input {sidecar.input_name!r} but the model's input is {inp.name!r}"
            )
        shape = tuple(s if isinstance(s, int) else sidecar.input.shape[i] for i, s in enumerate(inp.shape))
        # a symbolic (or -1) batch dimension takes any batch: frames of several sources in one call
        if not (isinstance(inp.shape[0], int) and inp.shape[0] > 0):
            self.max_batch = options.batch
        check_input(sidecar, inp.name, shape, _ORT_TYPES.get(inp.type, inp.type), path)
        outs = self.session.get_outputs()
        self._input_name = inp.name
        if sidecar.postprocess is not None:  # decode + NMS in the graph: the op's outputs, packed
            self._output_names = [outs[i].name for i in output_order(sidecar, [o.name for o in outs], path)]
        else:
            model_outputs = [(o.name, tuple(s if isinstance(s, int) else -1 for s in o.shape)) for o in outs]
            found = match_outputs(sidecar, model_outputs, path)
            self._output_names = [outs[found["loc"]].name, outs[found["conf"]].name]
        loc_spec, conf_spec = self.output_specs
        self._quant = [(loc_spec.scale, loc_spec.zero_point), (conf_spec.scale, conf_spec.zero_point)]
        used = self.session.get_providers()
        self.name = f"onnxruntime {used[0]}"
        self.max_in_flight = 2
        if options.device.upper() in ("AUTO", "GPU") and used[0] == CPU:
            log.info("ONNX Runtime runs %s on the CPU (available providers: %s)", path.name, ort.get_available_providers())

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self.session.run(self._output_names, {self._input_name: batch})
        if self.sidecar.postprocess is not None:
            return pack(self.sidecar.postprocess.op, outputs)
        return self._dequantize(*outputs)

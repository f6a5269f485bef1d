"""Deployment targets: which formats each device gets."""

from __future__ import annotations

from collections.abc import Sequence

from convert.errors import ConvertError
from convert.formats import FORMATS

TARGETS: dict[str, tuple[str, ...]] = {
    "intel": ("openvino_fp32", "openvino_fp16", "openvino_int8"),
    "rpi": ("tflite_fp32", "tflite_int8", "onnx_int8"),
    # jetson: tensorrt_qdq for TensorRT 10.x / JetPack 6 (explicit quantization; 8.6 builds it too),
    # tensorrt_calib for TensorRT 8.x / JetPack 5 (implicit quantization, deprecated in 10.x)
    "jetson": ("onnx_fp32", "onnx_fp16", "tensorrt_calib", "tensorrt_qdq"),
    # decode + NMS inside the model (convert.endtoend); not in "all" (each also builds its raw twin)
    "e2e": tuple(name for name in FORMATS if name.endswith("_e2e")),
    "all": tuple(name for name in FORMATS if not name.endswith("_e2e")),
}


def resolve_formats(selection: str | Sequence[str]) -> list[str]:
    """A target name, a format name, or a comma-separated / list mix of them -> format names.

    Order follows the format table; duplicates collapse. Unknown names raise one-line
    :class:`ConvertError`.
    """
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    wanted: set[str] = set()
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item in TARGETS:
            wanted.update(TARGETS[item])
        elif item in FORMATS:
            wanted.add(item)
        else:
            raise ConvertError(f"unknown target {item!r}; choose one of {', '.join(TARGETS)} or a format ({', '.join(FORMATS)})")
    if not wanted:
        raise ConvertError(f"no target given; choose one of {', '.join(TARGETS)}")
    return [name for name in FORMATS if name in wanted]

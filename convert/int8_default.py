"""What every INT8 export leaves float by default: the class-logit convolutions where the runtime
would otherwise quantize the class logits with one per-tensor scale.

ONNX Runtime QDQ and TFLite (PT2E) quantize each class-logit convolution's output (background and
foreground logits of every prior, one int8 scale per head); near-tied scores collapse onto one
step and mAP is lost in the ranking below the boxes anyone looks at (12-epoch BCCD model: held-out
drop 5.12 points in ONNX Runtime, 6.40 in TFLite, every box at score >= 0.5 unchanged). Leaving the
six class-logit convolutions float repairs it at 1.00-1.02x the full-INT8 latency
(docs/BENCHMARKS.md, issue 22, "Item 5 as the default"). NNCF (OpenVINO) and the TensorRT QDQ
graph do not quantize those outputs, so they need nothing.

``ConvertOptions.full_integer`` (``ssd-convert --full-integer``) turns this off for targets that
must run every layer in integer (an NPU or Edge TPU delegate): the TFLite model then has int8
outputs again, and the held-out check and ``--max-drop`` judge it as it is.
"""

from __future__ import annotations

from typing import Any

from convert.layers import head_output_layers

#: INT8 formats whose exporter quantizes the class-logit convolutions' outputs per tensor
LOGITS_FLOAT_FORMATS = ("onnx_int8", "tflite_int8")

#: the sidecar's ``quantization.class_logits`` entry, by whether they were left float
CLASS_LOGITS_NOTE = {
    True: "float (default: one int8 scale per head loses the score ranking; ssd-convert --full-integer quantizes them)",
    False: "int8 (--full-integer)",
}


def default_float_layers(model: Any, fmt: str, full_integer: bool = False) -> tuple[str, ...]:
    """Module paths of the convolutions ``fmt`` leaves float unless ``full_integer``: the last
    convolution of every classification head for :data:`LOGITS_FLOAT_FORMATS`, else none."""
    if full_integer or fmt not in LOGITS_FLOAT_FORMATS:
        return ()
    return tuple(name for name, _ in head_output_layers(model, "conf_heads"))


def with_defaults(model: Any, fmt: str, full_integer: bool, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The default float layers of ``fmt`` followed by ``extra`` (the fallback's), no repeats."""
    return tuple(dict.fromkeys((*default_float_layers(model, fmt, full_integer), *extra)))

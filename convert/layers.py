"""Layers that can stay float, named once and found in every backend's graph.

A *layer* is a convolution of the PyTorch model, named by its module path
(``features.stem.1.0``, ``conf_heads.0``). The float fallback and the sensitivity report
speak only of these names; each backend finds its own nodes for them:

- ONNX (ONNX Runtime QDQ): the ``Conv`` node whose weight initializer is ``<path>.weight``
  (the dynamo exporter names folded weights after the module; the names survive
  ``quant_pre_process``);
- OpenVINO (NNCF ``ignored_scope``): the ``Convolution``/``GroupConvolution`` op that carries
  that ONNX node's name (``openvino.convert_model`` keeps node names);
- TFLite (PT2E): FX nodes whose ``nn_module_stack`` contains ``inner.<path>`` (the NHWC
  wrapper of :func:`convert.pt2e.nhwc_module` holds the model as ``inner``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convert.errors import ConvertError, require


def conv_layers(model: Any) -> list[str]:
    """Module paths of every ``Conv2d`` of ``model``, in definition order."""
    torch = require("torch")
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def head_output_layers(model: Any, attribute: str) -> list[tuple[str, Any]]:
    """``(module path, Conv2d)`` of the last convolution of each head in ``model.<attribute>``
    (``conf_heads`` or ``loc_heads``): the layers whose outputs are the head outputs."""
    torch = require("torch")
    found = []
    for i, head in enumerate(getattr(model, attribute)):
        name, conv = [(n, m) for n, m in head.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
        found.append((f"{attribute}.{i}" + (f".{name}" if name else ""), conv))
    return found


def onnx_nodes(graph_path: Path, layers: Sequence[str]) -> list[str]:
    """ONNX node names of ``layers`` in the graph at ``graph_path``; ConvertError for a layer
    the graph does not have."""
    onnx = require("onnx")
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    by_weight = {n.input[1]: n.name for n in graph.node if n.op_type == "Conv" and len(n.input) > 1}
    missing = [layer for layer in layers if f"{layer}.weight" not in by_weight]
    if missing:
        raise ConvertError(f"the ONNX graph has no convolution for layer(s) {missing}")
    return [by_weight[f"{layer}.weight"] for layer in layers]


def onnx_layers(graph_path: Path) -> list[str]:
    """The layers (module paths) whose convolutions the ONNX graph names, in graph order."""
    onnx = require("onnx")
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    return [n.input[1][: -len(".weight")] for n in graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and n.input[1].endswith(".weight")]


def openvino_nodes(model: Any, layers: Sequence[str], onnx_graph: Path) -> list[str]:
    """Friendly names of the OpenVINO convolution ops of ``layers`` in ``model`` (converted from
    ``onnx_graph``): OpenVINO keeps the ONNX node names as op names, while a weight constant
    can lose its name (the first convolution's weights absorb the normalization)."""
    if not layers:
        return []
    names = onnx_nodes(onnx_graph, layers)
    convs = [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ("Convolution", "GroupConvolution")]
    found, missing = [], []
    for layer, name in zip(layers, names, strict=True):
        # a convolution with a bias becomes Convolution + Add; the Convolution is "<node>/WithoutBiases"
        match = [op for op in convs if op == name or op.startswith(name + "/")]
        (found if match else missing).append(match[0] if match else layer)
    if missing:
        raise ConvertError(f"the OpenVINO model has no convolution for layer(s) {missing}")
    return found


def tflite_prefixes(layers: Sequence[str]) -> list[str]:
    """``nn_module_stack`` paths of ``layers`` inside the NHWC wrapper."""
    return [f"inner.{layer}" for layer in layers]

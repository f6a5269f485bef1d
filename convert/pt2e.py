"""The PT2E pieces of TFLite conversion, shared with QAT (:mod:`train.qat`) and the benchmarks.

:func:`nhwc_module` (the NHWC wrapper every TFLite export traces), :func:`affine_normalization`
(the graph rewrite that makes INT8 start with QUANTIZE), :func:`make_quantizer` (litert-torch's
PT2E quantizer with the project's input and output rules) and :func:`leave_in_float` (the
float fallback's annotation filter). The conversion itself is :mod:`convert.exporters.tflite`.


The exported module takes ``images`` as NHWC RGB float pixels (``to_channel_last_io``-style
permute in front of the model) and returns ``{"loc": ..., "conf": ...}`` so the TFLite
signature names its outputs ``loc`` and ``conf`` (TFLite may order outputs differently;
the sidecar records each output's real tensor name).

INT8 is PT2E static quantization (torchao's ``prepare_pt2e``/``convert_pt2e`` with
litert-torch's ``PT2EQuantizer``: per-channel symmetric int8 weights, int8 activations),
calibrated on the calibration set, then lowered by ``litert_torch.convert``. Two graph
details make it *full* integer with int8 input and output:

- the model normalizes with ``(x - mean) / std``; the quantizer does not annotate ``sub`` and
  ``div``, which would leave a float island (and a float input) in front of the first
  convolution. :func:`affine_normalization` rewrites them, exactly, to ``x + (-mean)`` and
  ``x * (1/std)``, which it annotates, so the graph starts with QUANTIZE;
- the image input is given fixed quantization ``scale 1, zero point -128``, so int8 input
  ``q = pixel - 128`` holds the 0..255 pixels losslessly.

Outputs come out int8 (the quantizer annotates the final concatenations); the sidecar
records their scale and zero point for dequantization.
"""

from __future__ import annotations

import operator
from typing import Any

from convert.errors import ConvertError, require

INPUT_ARG = "images"
INPUT_SCALE = 1.0
INPUT_ZERO_POINT = -128


def nhwc_module(model: Any) -> Any:
    """``model`` wrapped to take ``images (N, H, W, 3)`` RGB float pixels and return ``{"loc", "conf"}``
    (held as ``inner``: :mod:`convert.layers` names its modules ``inner.<path>``)."""
    torch = require("torch")

    class NHWCDetector(torch.nn.Module):
        """``images (N, H, W, 3)`` RGB float pixels -> ``{"loc", "conf"}``."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images):
            loc, conf = self.inner(images.permute(0, 3, 1, 2).contiguous())
            return {"loc": loc, "conf": conf}

    return NHWCDetector(model).eval()


def _get_attr(gm: Any, target: str) -> Any:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def affine_normalization(gm: Any) -> int:
    """Rewrite ``sub(x, const)`` -> ``add(x, -const)`` and ``div(x, const)`` -> ``mul(x, 1/const)``.

    Only nodes whose second operand is a constant tensor (``get_attr``) change; returns how
    many were rewritten. The new nodes carry ``source_fn_stack`` so the quantizer's
    add/mul annotators recognize them.
    """
    torch = require("torch")
    aten = torch.ops.aten
    rewrites = {aten.sub.Tensor: (aten.add.Tensor, operator.add, lambda c: -c),
                aten.div.Tensor: (aten.mul.Tensor, operator.mul, lambda c: 1.0 / c)}
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in rewrites or len(node.args) != 2:
            continue
        const = node.args[1]
        if not isinstance(const, torch.fx.Node) or const.op != "get_attr":
            continue
        new_target, source_fn, transform = rewrites[node.target]
        name = f"{const.target.replace('.', '_')}_affine{count}"
        gm.register_buffer(name, transform(_get_attr(gm, const.target)))
        with gm.graph.inserting_before(node):
            attr = gm.graph.get_attr(name)
            new = gm.graph.call_function(new_target, (node.args[0], attr))
        new.meta = dict(node.meta)
        new.meta["source_fn_stack"] = [(new.name, source_fn)]
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        count += 1
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return count


def _minmax_activation_spec() -> Any:
    torch = require("torch")
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    return QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                            observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))


def make_quantizer(method: str, qat: bool = False) -> Any:
    """litert-torch's PT2EQuantizer (per-channel) with a fixed-qparams image input and
    min-max ranges on the final ``loc``/``conf`` concatenations.

    The histogram (L2-optimal) observer clips the tails of a distribution; inside the
    network that is a good trade, on the outputs the tails are the detections (the largest
    logits) and the far-moving boxes, so the output ranges are never clipped.
    """
    torch = require("torch")
    pt2e = require("litert_torch.quantize.pt2e_quantizer")
    from torch.utils._pytree import tree_leaves
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    config = pt2e.get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    if qat:  # the QAT fake-quantize specs, annotated as static patterns: BN is folded first (train.qat),
        # and litert-torch's conv-BN QAT patterns do not trace on this torch version
        config = type(config)(config.input_activation, config.output_activation, config.weight, config.bias,
                              config.fixed_qparams, False, config.is_dynamic)
    minmax = _minmax_activation_spec()
    if method == "minmax" and not qat:  # QAT (train.qat) keeps the config's fake-quantized activations
        config = type(config)(minmax, minmax, config.weight, config.bias, config.fixed_qparams, config.is_qat, config.is_dynamic)
    elif method not in ("histogram", "minmax"):
        raise ConvertError(f"TFLite (PT2E) has no calibration method {method!r}; choose histogram or minmax")
    fixed = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=INPUT_SCALE, zero_point=INPUT_ZERO_POINT,
                                         quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine)
    view_ops = {torch.ops.aten.permute.default, torch.ops.aten.contiguous.default}

    class DetectorQuantizer(pt2e.PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            image = {n for n in model.graph.nodes if n.op == "placeholder"}
            for n in model.graph.nodes:  # views of the input carry the same values
                if n.op == "call_function" and n.target in view_ops and n.args and n.args[0] in image:
                    image.add(n)
            for n in model.graph.nodes:
                ann = n.meta.get("quantization_annotation")
                if ann is not None:
                    for inp in list(ann.input_qspec_map):
                        if inp in image:
                            ann.input_qspec_map[inp] = fixed
            output = next(n for n in model.graph.nodes if n.op == "output")
            for n in tree_leaves(output.args):
                if isinstance(n, torch.fx.Node) and n.target == torch.ops.aten.cat.default:
                    # torch.export leaves these cats without source_fn_stack, so litert's cat
                    # annotator skips them and the converter then requantizes every head into
                    # the FIRST head's range (clipping the others). One shared min-max observer
                    # over all inputs instead.
                    first, rest = n.args[0][0], n.args[0][1:]
                    shared = SharedQuantizationSpec((first, n))
                    n.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={first: minmax, **{inp: shared for inp in rest}},
                        output_qspec=shared, _annotated=True)
            return model

    return DetectorQuantizer().set_global(config)


def _in_modules(node: Any, prefixes: list[str]) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [value[0] if isinstance(value, tuple) else str(value) for value in stack.values()]
    return any(path == p or path.startswith(p + ".") for path in paths for p in prefixes)


def _fused_after_conv() -> set[Any]:
    torch = require("torch")
    aten = torch.ops.aten
    names = ("batch_norm", "_native_batch_norm_legit_no_training", "relu", "relu_", "relu6", "hardtanh", "hardtanh_")
    return {getattr(aten, n).default for n in names if hasattr(aten, n)}


def _data_movement() -> set[Any]:
    """Ops that only move values: float when every input is float."""
    torch = require("torch")
    aten = torch.ops.aten
    names = ("view", "reshape", "_unsafe_view", "permute", "contiguous", "clone", "flatten", "cat", "squeeze", "unsqueeze")
    return {getattr(aten, n).default for n in names if hasattr(aten, n) and hasattr(getattr(aten, n), "default")}


def _sharing_groups(model: Any) -> dict[Any, set[Any]]:
    """node -> every node that shares one quantization range with it (``SharedQuantizationSpec``)."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    groups: dict[Any, set[Any]] = {}
    for node in model.graph.nodes:
        ann = node.meta.get("quantization_annotation")
        for spec in [] if ann is None else [*ann.input_qspec_map.values(), ann.output_qspec]:
            if isinstance(spec, SharedQuantizationSpec):
                edge = spec.edge_or_node
                members = {node, *(edge if isinstance(edge, tuple) else (edge,))}
                for member in list(members):
                    members |= groups.get(member, set())
                for member in members:
                    groups[member] = members
    return groups


def leave_in_float(quantizer: Any, prefixes: list[str]) -> Any:
    """Wrap ``quantizer.annotate`` so that FX nodes of the modules at ``prefixes`` (paths in
    ``nn_module_stack``, e.g. ``inner.conf_heads.0``) stay float, together with the BatchNorm
    and ReLU nodes that directly follow such a node (the quantizer annotates a conv-BN-ReLU
    pattern's output on its last node, which belongs to another module) and the reshapes,
    permutes and concatenations whose inputs are all float.

    A float node whose output range a quantized node shares (``SharedQuantizationSpec``: an
    output concatenation fed by other, quantized heads) keeps its output annotation and only
    loses its input ones. When every head feeding an output is float, that output is float
    too (``float32`` in the model's signature). LiteRT runs float ops between DEQUANTIZE and
    QUANTIZE (mixed precision).
    """
    if not prefixes:
        return quantizer
    annotate = quantizer.annotate
    fused = _fused_after_conv()
    moves = _data_movement()

    def annotate_leaving_float(model: Any) -> Any:
        model = annotate(model)
        groups = _sharing_groups(model)
        float_nodes: set[Any] = set()
        for node in model.graph.nodes:  # topological order
            inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
            follows = (node.op == "call_function" and node.target in fused and node.args
                       and node.args[0] in float_nodes and len(node.args[0].users) == 1)
            moved = node.op == "call_function" and node.target in moves and inputs and all(a in float_nodes for a in inputs)
            if _in_modules(node, prefixes) or follows or moved:  # the conv, the BN/ReLU fused into its output, views of it
                float_nodes.add(node)
        for node in model.graph.nodes:
            if "quantization_annotation" in node.meta and node in float_nodes:
                if groups.get(node, set()) - float_nodes:
                    node.meta["quantization_annotation"].input_qspec_map.clear()
                else:
                    del node.meta["quantization_annotation"]
        return model

    quantizer.annotate = annotate_leaving_float
    return quantizer

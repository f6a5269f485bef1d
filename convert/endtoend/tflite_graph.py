"""Small editors for a TFLite model held as ``ai_edge_litert``'s flatbuffer object API
(``schema_py_generated.ModelT``): find or add an operator code, add a tensor (optionally constant
and per-tensor quantized), read a tensor's quantization, append an operator.

Indices returned are positions in ``model.operatorCodes`` / ``graph.tensors``; nothing here
serializes the model (:mod:`convert.endtoend.tflite_postprocess` does).
"""

from __future__ import annotations

from typing import Any


def opcode(model: Any, builtin: int, custom: str | None = None, version: int = 1) -> int:
    """The index of the operator code ``builtin`` (``custom`` name for a custom op), added when missing."""
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and (
            custom is None or name == custom
        ):
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.customCode = custom
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def tensor(
    model: Any,
    graph: Any,
    name: str,
    shape: list[int],
    dtype: int,
    data: bytes | None = None,
    scale: float | None = None,
    zero_point: int | None = None,
) -> int:
    """Append a tensor of ``shape`` and TFLite ``dtype`` (constant when ``data`` is given, quantized
    per tensor when ``scale`` is); returns its index."""
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = list(data) if data is not None else None
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = list(shape)
    tensor.type = dtype
    tensor.buffer = len(model.buffers) - 1
    tensor.name = name
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [int(zero_point or 0)]
        tensor.quantization = q
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def quantization(tensor: Any) -> tuple[float | None, int | None]:
    """A per-tensor ``(scale, zero point)``, ``(None, None)`` for a float tensor."""
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None, None
    return float(q.scale[0]), int(q.zeroPoint[0])


def op(
    graph: Any,
    opcode: int,
    inputs: list[int],
    outputs: list[int],
    options_type: int = 0,
    options: Any = None,
    custom: bytes | None = None,
) -> None:
    """Append an operator (builtin options, or flexbuffer ``custom`` options for a custom op)."""
    from ai_edge_litert import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    if custom is not None:
        op.customOptions = list(custom)
        op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    graph.operators.append(op)

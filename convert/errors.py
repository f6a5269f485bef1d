"""One exception type for conversion, and the import guard for heavy optional packages."""

from __future__ import annotations

import importlib
from types import ModuleType


class ConvertError(RuntimeError):
    """A conversion that cannot go on; the one-line message names the cause and the fix."""


# package -> the pyproject extra that installs it
EXTRAS: dict[str, str] = {
    "torch": "convert",
    "onnx": "convert",
    "onnxruntime": "convert",
    "onnxslim": "convert",
    "onnxscript": "convert",
    "onnxconverter_common": "convert",
    "openvino": "convert",
    "nncf": "convert",
    "litert_torch": "convert",
    "ai_edge_litert": "convert",
    "torchao": "convert",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`ConvertError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "convert")
        raise ConvertError(
            f"{top} is not installed ({exc.__class__.__name__}: {exc}); install it with pip install -e \".[{extra}]\""
        ) from None

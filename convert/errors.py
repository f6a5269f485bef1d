"""One exception type for conversion, and the import guard for heavy optional packages."""

from __future__ import annotations

import importlib
from types import ModuleType


class ConvertError(RuntimeError):
    """A conversion that cannot go on; the one-line message names the cause and the fix."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`ConvertError` naming the extra to install
    (every package conversion imports comes with the ``convert`` extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ConvertError(
            f"{top} is not installed ({exc.__class__.__name__}: {exc}); install it with pip install -e \".[convert]\""
        ) from None

"""Errors the app reports to the user as one line (``ssd-edge: error: ...``)."""

from __future__ import annotations

import importlib
from types import ModuleType


class EdgeAppError(RuntimeError):
    """A problem the user can fix; the message says what happened and what to do."""


class SourceError(EdgeAppError):
    """A frame source that cannot be parsed or opened."""


class BackendError(EdgeAppError):
    """A runtime that cannot load or run an artifact."""


class OutputError(EdgeAppError):
    """An output that cannot be created."""


class MissingDependency(EdgeAppError):
    """An optional package this feature needs is not installed."""


def require(module: str, hint: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` with ``hint`` (how to install it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{hint} (import {module!r} failed: {exc})") from None

"""Model registry: ``build_model(arch, num_classes, spec)``; each arch names its default spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssd.specs import SSDSpec, get_spec
from train.models.ssd import SSD
from train.models.tiny import tiny_ssd

# arch -> (builder(num_classes, spec, **kwargs), default spec name)
ARCHS: dict[str, tuple[Callable[..., SSD], str]] = {
    "tiny": (tiny_ssd, "tiny"),
}


def build_model(arch: str, num_classes: int, spec: SSDSpec | None = None, **kwargs: Any) -> SSD:
    """Build an untrained SSD; ``spec`` defaults to the arch's own spec."""
    if arch not in ARCHS:
        raise KeyError(f"unknown model arch {arch!r}; choose one of {sorted(ARCHS)}")
    builder, default_spec = ARCHS[arch]
    return builder(num_classes, spec=spec or get_spec(default_spec), **kwargs)


__all__ = ["ARCHS", "SSD", "build_model"]

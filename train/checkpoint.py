"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict with at least ``model`` (state dict), ``arch`` (registry key),
``model_kwargs`` (extra builder arguments), ``spec`` (:meth:`SSDSpec.to_dict`), ``labels``
(foreground class names; ``num_classes = len(labels) + 1``); training adds ``optimizer``,
``scaler``, ``scheduler``, ``epoch`` (epochs completed), ``step``, ``rng`` (python, numpy,
torch and CUDA generator states), ``config`` (the full :class:`train.config.TrainConfig` as a
dict), ``best``, ``history`` (one dict per epoch) and ``metrics`` (the last epoch's).
``spec`` is the spec the model was trained with, custom scales included: rebuild priors from
it (``SSDSpec.from_dict``), not from its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssd.atomic import atomic_path
from ssd.sidecar import file_sha256
from ssd.specs import SSDSpec
from train.models import SSD, build_model


class CheckpointError(RuntimeError):
    """A missing, corrupt or inconsistent checkpoint; the message says what to do."""


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode on the CPU."""

    model: SSD
    arch: str
    spec: SSDSpec
    labels: list[str]
    sha256: str
    checkpoint: dict[str, Any]


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary name, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the raw checkpoint dict; one-line :class:`CheckpointError` on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with ssd-train or check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint ({type(exc).__name__}); re-train or re-copy it") from None
    missing = [k for k in ("model", "arch", "spec", "labels") if not isinstance(data, dict) or k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it was not written by ssd-train")
    return data


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild the model of a checkpoint and load its weights strictly."""
    data = read_checkpoint(path)
    spec = SSDSpec.from_dict(data["spec"])
    labels = [str(x) for x in data["labels"]]
    try:
        model = build_model(data["arch"], len(labels) + 1, spec, **dict(data.get("model_kwargs", {})))
        model.load_state_dict(data["model"], strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not match its arch {data['arch']!r} and spec {spec.name!r}: {first}") from None
    model.eval()
    return LoadedModel(model, str(data["arch"]), spec, labels, file_sha256(path), data)

"""The PyTorch side of a conversion: the checkpoint's model, checked against its spec, and
its reference outputs on calibration images."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError, require
from ssd.specs import SSDSpec


@dataclass(frozen=True)
class SourceModel:
    """A checkpoint's model ready for export.

    model: ``torch.nn.Module`` in eval mode; RGB ``(N, 3, S, S)`` float pixels in ``[0, 255]``
        -> ``loc (N, P, 4)``, ``conf (N, P, C)`` logits.
    """

    model: Any
    arch: str
    spec: SSDSpec
    labels: list[str]
    checkpoint: Path
    sha256: str

    @property
    def num_classes(self) -> int:
        return len(self.labels) + 1

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    def reference(self, batch_nchw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """PyTorch outputs for a float ``(N, 3, S, S)`` pixel batch: ``loc``, ``conf`` float32."""
        torch = require("torch")
        with torch.inference_mode():
            loc, conf = self.model(torch.from_numpy(np.ascontiguousarray(batch_nchw, dtype=np.float32)))
        return loc.numpy(), conf.numpy()


def load_source(checkpoint: str | Path) -> SourceModel:
    """Load a checkpoint and check that its model produces the spec's prior count.

    Raises a one-line :class:`ConvertError` for a missing or corrupt checkpoint, weights that
    do not fit the arch, or head outputs that do not match the spec's priors and labels.
    """
    torch = require("torch")
    from train.checkpoint import CheckpointError, load_model

    checkpoint = Path(checkpoint)
    try:
        with warnings.catch_warnings():  # torch.load warns about foreign pickles before failing on them
            warnings.simplefilter("ignore")
            loaded = load_model(checkpoint)
    except CheckpointError as exc:
        raise ConvertError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConvertError(f"checkpoint {checkpoint} does not describe a buildable model ({type(exc).__name__}: {exc})") from None
    spec = loaded.spec
    model = loaded.model.eval()
    size = spec.image_size
    try:
        with torch.inference_mode():
            loc, conf = model(torch.zeros(1, 3, size, size))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConvertError(f"checkpoint {checkpoint}: the model fails on a {size}x{size} input ({first}); it does not match its spec {spec.name!r}") from None
    expected_loc = (1, spec.num_priors, 4)
    expected_conf = (1, spec.num_priors, len(loaded.labels) + 1)
    if tuple(loc.shape) != expected_loc or tuple(conf.shape) != expected_conf:
        raise ConvertError(
            f"checkpoint {checkpoint}: the model outputs loc {tuple(loc.shape)}, conf {tuple(conf.shape)} but spec "
            f"{spec.name!r} and {len(loaded.labels)} labels need {expected_loc}, {expected_conf}"
        )
    return SourceModel(model, loaded.arch, spec, list(loaded.labels), checkpoint, loaded.sha256)

"""The identity a model file carries in its own metadata, and the check of a sidecar against it.

``ssd-convert`` writes the identity into the artifact before hashing it (ONNX
``metadata_props``, OpenVINO ``rt_info``, a TFLite metadata entry; :mod:`convert.identity`),
and every backend reads it back from the file and compares it with the sidecar
(:func:`check_identity`): a sidecar that belongs to another artifact (another format, another
calibration) or to another checkpoint is refused by name, even when its ``artifact_sha256``
was fixed up to match the file. numpy-free, torch-free.

The metadata is flat string key/value pairs (what every format stores), under the prefix
``ssd_edge.``: ``format``, ``labels`` (a JSON list), ``spec_sha256``, ``checkpoint_sha256``,
``calibration_sha256`` (empty when none) and ``postprocess`` (``app`` or the in-graph op).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ssd.specs import SSDSpec

if TYPE_CHECKING:
    from ssd.sidecar import Sidecar

PREFIX = "ssd_edge."
#: the name of the TFLite ``Model.metadata`` entry that holds the identity as JSON
TFLITE_METADATA_NAME = "ssd_edge_identity"
FIELDS = ("format", "labels", "spec_sha256", "checkpoint_sha256", "calibration_sha256", "postprocess")


def spec_digest(spec: SSDSpec) -> str:
    """sha256 of the prior spec as sorted JSON (variances included), after a round trip through
    :meth:`SSDSpec.from_dict` so ``2`` and ``2.0`` hash alike."""
    canonical = SSDSpec.from_dict(spec.to_dict()).to_dict()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """Who a model file is: its format, class names, prior spec and where it came from.

    format: the format-table key (``onnx_int8``, ``openvino_fp32_e2e``, ...).
    labels: foreground class names in model order (class ``c >= 1`` is ``labels[c - 1]``).
    spec_sha256: :func:`spec_digest` of the prior spec; checkpoint_sha256: the checkpoint file's.
    calibration_sha256: the calibration manifest's sha256 ("" for a float artifact).
    postprocess: ``"app"`` (raw heads, the app decodes) or the in-graph op's name.
    """

    format: str
    labels: tuple[str, ...]
    spec_sha256: str
    checkpoint_sha256: str
    calibration_sha256: str = ""
    postprocess: str = "app"

    def to_metadata(self) -> dict[str, str]:
        """Flat ``{"ssd_edge.<field>": str}`` for a format's metadata."""
        values = {**{f: str(getattr(self, f)) for f in FIELDS}, "labels": json.dumps(list(self.labels))}
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ModelIdentity | None:
        """The identity in ``metadata`` (``None`` when the file carries none)."""
        if PREFIX + "format" not in metadata:
            return None
        try:
            labels = json.loads(metadata.get(PREFIX + "labels", "[]"))
        except json.JSONDecodeError:
            labels = ["<unreadable>"]
        return cls(
            format=str(metadata[PREFIX + "format"]),
            labels=tuple(str(x) for x in labels),
            spec_sha256=str(metadata.get(PREFIX + "spec_sha256", "")),
            checkpoint_sha256=str(metadata.get(PREFIX + "checkpoint_sha256", "")),
            calibration_sha256=str(metadata.get(PREFIX + "calibration_sha256", "")),
            postprocess=str(metadata.get(PREFIX + "postprocess", "app")),
        )


def identity_of(sidecar: Sidecar) -> ModelIdentity:
    """The identity a sidecar claims for its model file."""
    return ModelIdentity(
        format=sidecar.format,
        labels=tuple(sidecar.labels),
        spec_sha256=spec_digest(sidecar.spec),
        checkpoint_sha256=sidecar.checkpoint_sha256,
        calibration_sha256=sidecar.calibration_sha256 or "",
        postprocess=sidecar.postprocess.op if sidecar.postprocess is not None else "app",
    )


def _short(value: str) -> str:
    return value[:12] if len(value) == 64 else value


def check_identity(found: ModelIdentity | None, sidecar: Sidecar, artifact_name: str) -> None:
    """Refuse ``sidecar`` unless it claims exactly the identity the model file carries.

    Raises :class:`ssd.sidecar.SidecarError` with one line naming the first mismatch (format,
    checkpoint, calibration, labels, prior spec, postprocess) or a file that carries none.
    """
    from ssd.sidecar import SidecarError

    where = f"sidecar of {artifact_name}"
    if found is None:
        raise SidecarError(f"{artifact_name} carries no identity in its metadata (converted by an older ssd-convert?); "
                           "re-run ssd-convert")
    claimed = identity_of(sidecar)
    names = {"format": "format", "checkpoint_sha256": "checkpoint", "calibration_sha256": "calibration set",
             "labels": "labels", "spec_sha256": "prior spec", "postprocess": "postprocess"}
    for name in ("format", "checkpoint_sha256", "calibration_sha256", "labels", "spec_sha256", "postprocess"):
        mine, theirs = getattr(found, name), getattr(claimed, name)
        if mine != theirs:
            if name == "labels":
                mine, theirs = list(mine), list(theirs)
            else:
                mine, theirs = _short(str(mine)) or "none", _short(str(theirs)) or "none"
            raise SidecarError(
                f"{where} belongs to another model: the file's {names[name]} is {mine!r}, the sidecar's {theirs!r}; "
                "keep each sidecar with its own model file (or re-run ssd-convert)"
            )

"""The JSON sidecar next to every artifact, and its validation. numpy-free, torch-free.

The sidecar of ``model.onnx`` is ``model.onnx.json``. It records what the edge side needs
to feed the model and read its outputs, and where the model came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ssd.atomic import atomic_write_text
from ssd.preprocess import InputSpec
from ssd.specs import SSDSpec

SIDECAR_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")


class SidecarError(ValueError):
    """A missing, malformed or mismatching sidecar; the message says what to do."""


@dataclass(frozen=True)
class OutputSpec:
    """One model output: its runtime name, shape, dtype and (for integer outputs) quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(s) for s in data["shape"]),
            dtype=str(data.get("dtype", "float32")),
            scale=data.get("scale"),
            zero_point=data.get("zero_point"),
        )


@dataclass(frozen=True)
class Sidecar:
    """Metadata of one artifact.

    format: the format-table key, e.g. ``"onnx_int8"``.
    runtime: ``"onnxruntime"``, ``"openvino"`` or ``"tflite"``.
    precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
    artifact: the artifact's file name (same folder as the sidecar).
    input_name: the runtime's name of the single image input.
    input: what :func:`ssd.preprocess.preprocess` must produce.
    outputs: ``{"loc": OutputSpec, "conf": OutputSpec}``; ``loc`` is ``(N, P, 4)`` and
        ``conf`` ``(N, P, C)`` logits after dequantization.
    labels: foreground class names; model class ``c >= 1`` is ``labels[c - 1]``.
    spec: the prior spec (:meth:`ssd.specs.SSDSpec.to_dict`), variances included.
    """

    format: str
    runtime: str
    precision: str
    artifact: str
    input_name: str
    input: InputSpec
    outputs: dict[str, OutputSpec]
    labels: list[str]
    spec: SSDSpec
    checkpoint_sha256: str
    artifact_sha256: str
    calibration_sha256: str | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = SIDECAR_VERSION

    @property
    def num_classes(self) -> int:
        """Classes in ``conf`` including background."""
        return len(self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input"] = self.input.to_dict()
        data["spec"] = self.spec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sidecar:
        try:
            return cls(
                format=str(data["format"]),
                runtime=str(data["runtime"]),
                precision=str(data["precision"]),
                artifact=str(data["artifact"]),
                input_name=str(data["input_name"]),
                input=InputSpec.from_dict(data["input"]),
                outputs={k: OutputSpec.from_dict(v) for k, v in data["outputs"].items()},
                labels=[str(x) for x in data["labels"]],
                spec=SSDSpec.from_dict(data["spec"]),
                checkpoint_sha256=str(data["checkpoint_sha256"]),
                artifact_sha256=str(data["artifact_sha256"]),
                calibration_sha256=data.get("calibration_sha256"),
                tool_versions=dict(data.get("tool_versions", {})),
                extra=dict(data.get("extra", {})),
                version=int(data.get("version", SIDECAR_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SidecarError(f"malformed sidecar ({type(exc).__name__}: {exc}); re-run ssd-convert") from None


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(sidecar: Sidecar, artifact: str | Path) -> Path:
    """Write ``artifact``'s sidecar atomically; returns its path."""
    path = sidecar_path(artifact)
    atomic_write_text(path, json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(artifact: str | Path) -> Sidecar:
    """Read and check the sidecar of ``artifact``; raises :class:`SidecarError` on any problem."""
    artifact = Path(artifact)
    path = sidecar_path(artifact)
    if not artifact.exists():
        raise SidecarError(f"model file {artifact} does not exist; check --model or run ssd-convert")
    if not path.exists():
        raise SidecarError(f"{artifact} has no sidecar {path.name}; artifacts from ssd-convert carry one")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SidecarError(f"cannot read sidecar {path}: {exc}; re-run ssd-convert") from None
    if not isinstance(data, dict):
        raise SidecarError(f"sidecar {path} is not a JSON object; re-run ssd-convert")
    sidecar = Sidecar.from_dict(data)
    validate_sidecar(sidecar, artifact)
    return sidecar


def validate_sidecar(sidecar: Sidecar, artifact: str | Path, check_hash: bool = True) -> None:
    """Refuse a sidecar that does not describe ``artifact``; raises :class:`SidecarError`."""
    artifact = Path(artifact)
    where = f"sidecar of {artifact.name}"
    if sidecar.version > SIDECAR_VERSION:
        raise SidecarError(f"{where} has version {sidecar.version}; this build reads up to {SIDECAR_VERSION}")
    if sidecar.artifact != artifact.name:
        raise SidecarError(f"{where} describes {sidecar.artifact!r}, not {artifact.name!r}; keep each sidecar with its model")
    if sidecar.precision not in PRECISIONS:
        raise SidecarError(f"{where}: unknown precision {sidecar.precision!r}")
    if set(sidecar.outputs) != {"loc", "conf"}:
        raise SidecarError(f"{where}: outputs must be 'loc' and 'conf', got {sorted(sidecar.outputs)}")
    priors = sidecar.spec.num_priors
    loc, conf = sidecar.outputs["loc"].shape, sidecar.outputs["conf"].shape
    if loc[-2:] != (priors, 4):
        raise SidecarError(f"{where}: loc shape {loc} does not match the spec's {priors} priors")
    if conf[-2:] != (priors, sidecar.num_classes):
        raise SidecarError(
            f"{where}: conf shape {conf} does not match {priors} priors x {sidecar.num_classes} classes"
        )
    if check_hash and file_sha256(artifact) != sidecar.artifact_sha256:
        raise SidecarError(f"{artifact} does not match the sha256 in its sidecar; the file was changed or is corrupt")
    validate_companions(sidecar, artifact, check_hash)


def validate_companions(sidecar: Sidecar, artifact: Path, check_hash: bool = True) -> None:
    """Check the files a model needs beside it (``extra["files"]``: name -> sha256), e.g.
    OpenVINO's ``.bin`` weights or a TensorRT calibration table."""
    files = sidecar.extra.get("files") or {}
    if not isinstance(files, dict):
        raise SidecarError(f"sidecar of {artifact.name}: extra.files must map file names to sha256; re-run ssd-convert")
    for name, digest in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise SidecarError(f"sidecar of {artifact.name} names companion {name!r}, which is not a plain file name")
        companion = artifact.with_name(name)
        if not companion.is_file():
            raise SidecarError(f"{artifact.name} needs {name} next to it; copy it along with the model")
        if check_hash and file_sha256(companion) != digest:
            raise SidecarError(f"{name} (beside {artifact.name}) does not match the sha256 in the sidecar; it was changed or is corrupt")

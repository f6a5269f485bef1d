"""The sidecar of an export: built from the table's row and the exporter's record, written next
to the staged artifact and read back (as every reader will read it).

A plain function of the run's context, called by the pipeline for every format and by the
INT8 fallback and the sensitivity report for each re-export they run through its backend.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

from convert.context import ExportContext
from convert.exported import Exported
from convert.formats import FORMATS, Format
from convert.identity import stamp_identity
from ssd.identity import identity_of
from ssd.sidecar import Sidecar, file_sha256, labels_digest, read_sidecar, write_sidecar


def tool_versions(dists: Sequence[str]) -> dict[str, str]:
    """Installed versions of the given distributions plus numpy and Python."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def build_sidecar(ctx: ExportContext, fmt: Format, exported: Exported, final_name: str) -> Sidecar:
    """The sidecar of ``exported`` (a ``fmt`` export) as it will be installed under ``final_name``."""
    calib_sha = ctx.calib.manifest_sha256 if (ctx.calib is not None and fmt.needs_calibration) else None
    extra: dict[str, Any] = {
        "created_by": "ssd-convert",
        "arch": ctx.source.arch,
        "description": fmt.description,
        **exported.extra,
    }
    sidecar = Sidecar(
        format=fmt.name,
        runtime=fmt.runtime,
        precision=fmt.precision,
        artifact=final_name,
        input_name=exported.input_name,
        input=exported.input,
        outputs=exported.outputs,
        labels=list(ctx.source.labels),
        spec=ctx.source.spec,
        checkpoint_sha256=ctx.source.sha256,
        labels_sha256=labels_digest(ctx.source.labels),
        artifact_sha256="",
        calibration_sha256=calib_sha,
        tool_versions=tool_versions(fmt.tools),
        runtime_hints=exported.runtime_hints,
        files={},
        postprocess=exported.postprocess,
        extra=extra,
    )
    # the model file carries its own identity (ssd.identity), written before the sha256s are taken
    stamp_identity(exported.artifact, identity_of(sidecar))
    return dataclasses.replace(sidecar, artifact_sha256=file_sha256(exported.artifact),
                               files={p.name: file_sha256(p) for p in exported.companions})


def write_staged_sidecar(ctx: ExportContext, name: str, exported: Exported) -> Sidecar:
    """Write the sidecar of format ``name``'s staged export next to it and read it back."""
    write_sidecar(build_sidecar(ctx, FORMATS[name], exported, exported.artifact.name), exported.artifact)
    return read_sidecar(exported.artifact)

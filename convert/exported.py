"""What an exporter returns (:class:`Exported`) and the two callables a format row holds.

Below the exporters, the table (:mod:`convert.formats`) and the sidecar builder
(:mod:`convert.staging`), so each of them can name these types without importing the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert.context import ExportContext
from convert.validate import Validation
from ssd.preprocess import InputSpec
from ssd.sidecar import InGraphPostprocess, OutputSpec, RuntimeHints, Sidecar


@dataclass(frozen=True)
class Exported:
    """What an exporter wrote (all paths inside the staging folder).

    artifact: the file a runtime opens; companions: files that must sit next to it.
    input_name / input: the runtime's input tensor name and what ``preprocess`` must produce.
    outputs: ``{"loc", "conf"}`` -> runtime tensor name, shape, dtype, quantization.
    runtime_hints: how a runtime must run it (precision hint, TensorRT table, provider).
    extra: provenance for the sidecar's ``extra`` (settings, exporter); never read to run it.
    """

    artifact: Path
    input_name: str
    input: InputSpec
    outputs: dict[str, OutputSpec]
    companions: tuple[Path, ...] = ()
    runtime_hints: RuntimeHints = field(default_factory=RuntimeHints)
    extra: dict[str, Any] = field(default_factory=dict)
    #: decode + NMS inside the graph (end-to-end formats, :mod:`convert.endtoend`; outputs are
    #: then the op's, :data:`ssd.sidecar.IN_GRAPH_OUTPUTS`); ``None``: raw heads
    postprocess: InGraphPostprocess | None = None


#: ``(context, staging folder, file stem) -> Exported``
Exporter = Callable[[ExportContext, Path, str], Exported]
#: ``(context, staged artifact, its sidecar) -> Validation`` (the post-write check)
Check = Callable[[ExportContext, Path, Sidecar], Validation]

"""What one conversion run reports: a result per format and the summary table ``ssd-convert`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convert.errors import ConvertError
from convert.validate import Validation


@dataclass
class ArtifactResult:
    """Outcome of one format: ``path`` is set only when the artifact passed and was installed."""

    format: str
    path: Path | None
    size_mb: float
    seconds: float
    validation: Validation | None = None
    error: str | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.validation is not None and self.validation.passed


@dataclass
class ConvertReport:
    """All results of one run, in table order."""

    out: Path
    results: list[ArtifactResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.format for r in self.results if not r.ok]

    def artifact(self, fmt: str) -> Path:
        """Path of a produced artifact; ConvertError when that format failed or was not asked for."""
        for r in self.results:
            if r.format == fmt and r.ok and r.path is not None:
                return r.path
        raise ConvertError(f"no valid {fmt} artifact in this run")

    def table(self) -> str:
        """The summary table: format, file, size MB, validation, time."""
        rows = [("format", "file", "size MB", "validation", "time s")]
        for r in self.results:
            status = short_status(r)
            rows.append((r.format, r.path.name if r.path else "-", f"{r.size_mb:.2f}" if r.path else "-", status, f"{r.seconds:.1f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) if i != 2 and i != 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"{sum(r.ok for r in self.results)}/{len(self.results)} formats valid, {self.seconds:.1f} s in all, in {self.out}")
        return "\n".join(lines)


def short_status(r: ArtifactResult) -> str:
    """A compact validation cell for the summary table, by the kind of check that ran."""
    if r.error is not None:
        return "FAILED: " + (r.error if len(r.error) <= 60 else r.error[:57] + "...")
    v = r.validation
    if v is None:
        return "-"
    m = v.metrics
    if v.kind == "detections":
        text = f"F1 {m['f1']:.2f}, class {m['class_agreement']:.2f}, IoU {m['mean_iou']:.2f}"
    elif v.kind == "sqnr":
        text = f"SQNR {min(m['sqnr_loc_db'], m['sqnr_conf_db']):.1f} dB (few PyTorch boxes)"
    elif v.kind in ("output_diff", "graph_and_table"):
        text = f"max diff {m['max_rel_diff']:.1e}" + (" + table" if v.kind == "graph_and_table" else "")
    else:
        text = v.summary[:60]
    return ("ok: " if v.passed else "FAILED: ") + text

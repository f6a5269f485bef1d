"""``ssd-convert.json`` in the output folder: every format a run was asked for, and why one failed.

A failed format leaves no artifact and no sidecar, so without this record ``ssd-compare`` could
not tell a format that failed from one never asked for. Entries are keyed by format and merged
with the record of earlier runs into the same folder (a later success replaces a failure).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssd.atomic import atomic_write_text

RECORD_NAME = "ssd-convert.json"


def read_record(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Format name -> entry (``format``, ``runtime``, ``precision``, ``ok``, ``error``,
    ``artifact``); empty when the folder has no readable record."""
    path = Path(folder) / RECORD_NAME
    try:
        data = json.loads(path.read_text())
        return {str(e["format"]): dict(e) for e in data.get("formats", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_record(folder: Path, results: Sequence[Any], runtimes: dict[str, tuple[str, str]]) -> Path:
    """Merge this run's :class:`convert.report.ArtifactResult` s into the folder's record.

    runtimes: format name -> ``(runtime, precision)``.
    """
    entries = read_record(folder)
    for r in results:
        runtime, precision = runtimes[r.format]
        entries[r.format] = {"format": r.format, "runtime": runtime, "precision": precision, "ok": bool(r.ok),
                             "error": r.error, "artifact": r.path.name if r.path is not None else None}
    path = Path(folder) / RECORD_NAME
    atomic_write_text(path, json.dumps({"created_by": "ssd-convert", "formats": list(entries.values())}, indent=1) + "\n")
    return path

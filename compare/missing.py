"""Rows for the artifacts ``ssd-convert`` was asked for but that are not in the folder, with why.

A failed format leaves no file (:mod:`convert.pipeline`); its reason is in the folder's
``ssd-convert.json`` (:mod:`convert.record`). Every format named there gets a row: a failed
one says why, one recorded as written but absent says so. ``--strict`` fails on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from compare.results import ModelResult

RECORD_NAME = "ssd-convert.json"  # convert.record.RECORD_NAME (compare reads it without importing convert)


def missing_rows(folder: Path, found: Iterable[Path]) -> list[ModelResult]:
    """One error row per recorded format with no artifact among ``found``."""
    try:
        entries = json.loads((Path(folder) / RECORD_NAME).read_text()).get("formats", [])
    except (OSError, ValueError, AttributeError):
        return []
    present = {p.name for p in found}
    rows = []
    for e in entries:
        if not isinstance(e, dict) or "format" not in e:
            continue
        name, artifact = str(e["format"]), e.get("artifact")
        if e.get("ok") and artifact in present:
            continue
        if not e.get("ok"):
            why = f"ssd-convert failed: {e.get('error') or 'no reason recorded'}"
        else:
            why = f"missing: ssd-convert wrote {artifact} but it is not in {folder} (moved or deleted?)"
        rows.append(ModelResult(name, str(e.get("runtime", "?")), str(e.get("precision", "?")), None, None, error=why))
    return rows

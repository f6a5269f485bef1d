"""What zones and lines report: one :class:`Event` per enter, exit, crossing or loiter.

As a JSON line (``--events FILE`` or ``-``; the MQTT payload is the same object)::

    {"seq": 7, "type": "cross", "source": "default", "zone": "door", "track_id": 3, "label": "car",
     "frame": 412, "timestamp": 1765117000.123, "box": [300.5, 120.0, 380.0, 210.25],
     "direction": "in", "dwell_s": null}

seq: the run's event number, 0, 1, ... (a subscriber can spot a duplicate or a gap with it);
type: ``enter`` | ``exit`` | ``cross`` | ``loiter``; zone: the zone or line name; box: xyxy
pixels of the track's detection (``null`` for an exit caused by the tracker dropping the track);
direction: ``in`` | ``out`` for ``cross``, else ``null``; dwell_s: seconds inside the zone so far
for ``exit`` and ``loiter``, else ``null``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

EVENT_TYPES = ("enter", "exit", "cross", "loiter")


@dataclass
class Event:
    """One zone or line event (see the module docstring for the fields)."""

    type: str
    source: str
    zone: str
    track_id: int
    label: str
    frame: int
    timestamp: float
    box: list[float] | None
    direction: str | None = None
    dwell_s: float | None = None
    seq: int = -1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["timestamp"] = round(self.timestamp, 6)
        return {"seq": data.pop("seq"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

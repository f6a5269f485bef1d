"""Outputs: a window, a video file, MJPEG over HTTP, JSON lines.

``--output`` values (repeatable):

    window                       an OpenCV window (needs a display; ``q`` quits)
    -  or  stdout                JSON lines on stdout
    dets.jsonl / .ndjson / .json JSON lines in a file
    out.avi / .mp4 / .mkv / .mov annotated video (MJPG for .avi/.mkv, mp4v for .mp4/.mov)

``--serve [HOST:]PORT`` adds the MJPEG server (loopback unless HOST is given); ``--events FILE|-``
the zone events as JSON lines; ``--mqtt HOST:PORT`` events and zone counts to an MQTT broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from edge_app.errors import OutputError
from edge_app.outputs.base import FrameResult, Output

if TYPE_CHECKING:
    from edge_app.outputs.mqtt import MqttOptions

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def describe_output(spec: str) -> str:
    """The kind of one ``--output`` value: ``window``, ``jsonl`` or ``video``; opens nothing.

    Raises :class:`OutputError` for a value that is none of them.
    """
    text = spec.strip()
    if text.lower() == "window":
        return "window"
    if text in ("-", "stdout") or text.lower().endswith(JSONL_SUFFIXES):
        return "jsonl"
    from edge_app.outputs.video import FOURCC_BY_SUFFIX

    if os.path.splitext(text)[1].lower() in FOURCC_BY_SUFFIX:
        return "video"
    raise OutputError(
        f"--output {spec!r}: use window, - (JSON lines on stdout), a .jsonl file, or a video file "
        f"({', '.join(FOURCC_BY_SUFFIX)})"
    )


def make_output(spec: str, fps: float | None = None) -> Output:
    """One ``--output`` value -> an :class:`Output`."""
    kind, text = describe_output(spec), spec.strip()
    if kind == "window":
        from edge_app.outputs.window import WindowOutput

        return WindowOutput()
    if kind == "jsonl":
        from edge_app.outputs.jsonl import JsonLinesOutput

        return JsonLinesOutput(text)
    from edge_app.outputs.video import VideoFileOutput

    return VideoFileOutput(text, fps=fps)


def build_outputs(specs: Iterable[str], serve: str | None = None, fps: float | None = None,
                  events: str | None = None, mqtt: MqttOptions | None = None) -> list[Output]:
    """All outputs of a run; on an error the ones already made are closed.

    The MJPEG server binds first, so a port in use fails before any output file is opened
    (and truncated). ``events``: the ``--events`` file or ``-``; ``mqtt``: an
    :class:`edge_app.outputs.mqtt.MqttOptions` (the client connects in the background).
    """
    specs = list(specs)
    for spec in specs:  # refuse an unknown --output before anything is opened
        describe_output(spec)
    outputs: list[Output] = []
    try:
        if serve:
            from edge_app.outputs.mjpeg import MjpegOutput, parse_serve

            host, port = parse_serve(serve)
            outputs.append(MjpegOutput(host, port))
        for spec in specs:
            outputs.append(make_output(spec, fps))
        if events:
            from edge_app.outputs.jsonl import EventLinesOutput

            outputs.append(EventLinesOutput(events.strip()))
        if mqtt is not None:
            from edge_app.outputs.mqtt import MqttOutput

            outputs.append(MqttOutput(mqtt))
    except BaseException:
        for out in outputs:
            out.close()
        raise
    return outputs


__all__ = ["FrameResult", "Output", "build_outputs", "describe_output", "make_output"]

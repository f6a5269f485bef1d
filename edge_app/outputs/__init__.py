"""Outputs: a window, a video file, MJPEG over HTTP, JSON lines.

``--output`` values (repeatable):

    window                       an OpenCV window (needs a display; ``q`` quits)
    -  or  stdout                JSON lines on stdout
    dets.jsonl / .ndjson / .json JSON lines in a file
    out.avi / .mp4 / .mkv / .mov annotated video (MJPG for .avi/.mkv, mp4v for .mp4/.mov)

``--serve [HOST:]PORT`` adds the MJPEG server (loopback unless HOST is given); ``--events FILE|-``
the zone events as JSON lines; ``--mqtt HOST:PORT`` events and zone counts to an MQTT broker.

With several named sources (:func:`build_source_outputs`) JSON lines, events and MQTT are shared
(each record names its source), while each source gets its own video file (``out.avi`` ->
``out_cam1.avi``), window and MJPEG stream (``/cam1.mjpg``).
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


def source_video_path(path: str, name: str) -> str:
    """``out.avi`` of source ``cam1`` -> ``out_cam1.avi`` (next to it)."""
    stem, suffix = os.path.splitext(path)
    return f"{stem}_{name}{suffix}"


def make_output(spec: str, fps: float | None = None, source: str | None = None) -> Output:
    """One ``--output`` value -> an :class:`Output`; ``source``: the named source a video file or
    window is for (its file gets the name appended, its window the name in the title)."""
    kind, text = describe_output(spec), spec.strip()
    if kind == "window":
        from edge_app.outputs.window import WindowOutput

        return WindowOutput() if source is None else WindowOutput(f"ssd-edge {source}")
    if kind == "jsonl":
        from edge_app.outputs.jsonl import JsonLinesOutput

        return JsonLinesOutput(text)
    from edge_app.outputs.video import VideoFileOutput

    return VideoFileOutput(text if source is None else source_video_path(text, source), fps=fps)


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


def build_source_outputs(specs: Iterable[str], names: list[str], serve: str | None = None,
                         fps: dict[str, float | None] | None = None, events: str | None = None,
                         mqtt: MqttOptions | None = None) -> tuple[dict[str, list[Output]], list[Output]]:
    """The outputs of a run with named sources: ``({name: its outputs}, every output to close)``.

    Per source: a video file per ``--output`` video value (``out_<name>.avi``), a window, and
    a stream ``/<name>.mjpg`` on the one MJPEG server; shared by all: JSON lines (records carry
    ``"source"``), ``--events`` and MQTT. Same start-up order as :func:`build_outputs`: values
    checked first, the server bound before any file is opened; on an error the ones made are closed.
    """
    specs = list(specs)
    kinds = [describe_output(spec) for spec in specs]
    fps = fps or {}
    owned: list[Output] = []
    per_source: dict[str, list[Output]] = {name: [] for name in names}
    try:
        if serve:
            from edge_app.outputs.mjpeg import MjpegOutput, MjpegStreamOutput, parse_serve

            host, port = parse_serve(serve)
            server_output = MjpegOutput(host, port, streams=names)
            owned.append(server_output)
            for name in names:
                per_source[name].append(MjpegStreamOutput(server_output.server, name))
        shared = [make_output(spec) for spec, kind in zip(specs, kinds, strict=True) if kind == "jsonl"]
        owned.extend(shared)
        for name in names:
            for spec, kind in zip(specs, kinds, strict=True):
                if kind != "jsonl":
                    out = make_output(spec, fps.get(name), source=name)
                    owned.append(out)
                    per_source[name].append(out)
        if events:
            from edge_app.outputs.jsonl import EventLinesOutput

            shared.append(EventLinesOutput(events.strip()))
            owned.append(shared[-1])
        if mqtt is not None:
            from edge_app.outputs.mqtt import MqttOutput

            shared.append(MqttOutput(mqtt))
            owned.append(shared[-1])
    except BaseException:
        for out in owned:
            out.close()
        raise
    for name in names:
        per_source[name].extend(shared)
    return per_source, owned


__all__ = ["FrameResult", "Output", "build_outputs", "build_source_outputs", "describe_output", "make_output",
           "source_video_path"]

"""``ssd-edge``: a thin ``main()`` over :func:`edge_app.app.run`.

    ssd-edge --model artifacts/tiny/model_onnx_int8.onnx --source 0 --output window
    ssd-edge --model model.tflite --source picam://0 --threads 4 --serve 0.0.0.0:8080
    ssd-edge --model model.xml --device GPU --source clip.mp4 --output out.avi --output dets.jsonl
    ssd-edge --model model.onnx --source clip.mp4 --loop --benchmark 300
    ssd-edge --model model.onnx --source rtsp://cam/stream --track --zones zones.yaml --events events.jsonl \
        --mqtt 127.0.0.1:1883 --serve 8080
    ssd-edge --model model_dynamic.onnx --source door=rtsp://cam1/stream --source yard=rtsp://cam2/stream \
        --output dets.jsonl --serve 8080     # one model, two cameras: /door.mjpg, /yard.mjpg
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.app import RunOptions, RunSummary, run
from edge_app.backends import BackendOptions
from edge_app.errors import EdgeAppError
from edge_app.pipeline import PipelineOptions
from edge_app.sources import SourceOptions
from ssd.cli import EXIT_OK, EXIT_USAGE, ArgumentParser, fail
from ssd.postprocess import LIVE, PostprocessParams

if TYPE_CHECKING:
    from edge_app.analytics import AnalyticsOptions
    from edge_app.outputs.mqtt import MqttOptions


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="ssd-edge",
        description="Stream camera frames through an SSD artifact (ONNX Runtime, OpenVINO or LiteRT).",
    )
    p.add_argument("--model", "-m", required=True, type=Path, help=".onnx, .xml (OpenVINO IR) or .tflite with its .json sidecar")
    p.add_argument("--source", "-s", required=True, action="append", metavar="[NAME=]URI",
                   help="0 | v4l2:///dev/video0 | clip.mp4 | file://clip.mp4 | rtsp://... | http://... | csi://0 | "
                        "picam://0 | images://folder | synthetic://; repeat it for several cameras through one model, "
                        "each named NAME=URI (its name tags JSON lines, names its stream /NAME.mjpg and its zones)")
    io = p.add_argument_group("outputs")
    io.add_argument("--output", "-o", action="append", default=None, metavar="OUT",
                    help="window | - (JSON lines on stdout) | dets.jsonl | out.avi/.mp4; repeatable "
                         "(default: window if there is a display, else JSON lines on stdout)")
    io.add_argument("--serve", metavar="[HOST:]PORT", help="MJPEG over HTTP, e.g. 127.0.0.1:8080 (loopback unless HOST)")
    io.add_argument("--no-fps-overlay", dest="show_fps", action="store_false", help="do not draw the FPS")
    rt = p.add_argument_group("runtime")
    rt.add_argument("--device", default="AUTO", help="AUTO | CPU | GPU | NPU (OpenVINO) | CUDA | TENSORRT (ONNX Runtime)")
    rt.add_argument("--threads", type=int, default=None, help="runtime intra-op threads (default: the runtime's)")
    rt.add_argument("--hint", default=None, choices=("LATENCY", "THROUGHPUT"),
                    help="OpenVINO performance hint (default: LATENCY for one source, THROUGHPUT for several)")
    rt.add_argument("--batch", type=int, default=None,
                    help="several sources: most frames per backend call (default: one per source, when the artifact "
                         "was exported with --dynamic-batch; else 1)")
    rt.add_argument("--requests", dest="num_requests", type=int, default=None, help="OpenVINO async infer requests")
    rt.add_argument("--no-xnnpack", dest="xnnpack", action="store_false", help="TFLite: without the XNNPACK delegate")
    rt.add_argument("--precision-hint", dest="inference_precision", default=None, choices=("f32", "bf16", "f16"),
                    help="OpenVINO inference precision (default: f32 on the CPU for FP32 artifacts, else the device's)")
    rt.add_argument("--cache-dir", default=None, help="TensorRT engine / OpenVINO model cache folder")
    rt.add_argument("--in-flight", type=int, default=None, help="frames in the backend at once (default: backend's)")
    det = p.add_argument_group("detections")
    det.add_argument("--score", dest="score_threshold", type=float, default=LIVE.score_threshold, help="score threshold")
    det.add_argument("--iou", dest="iou_threshold", type=float, default=LIVE.iou_threshold, help="NMS IoU threshold")
    det.add_argument("--top-k", type=int, default=LIVE.top_k, help="candidates entering NMS")
    det.add_argument("--max-detections", type=int, default=LIVE.max_detections, help="detections per frame")
    src = p.add_argument_group("source")
    src.add_argument("--width", type=int, default=None, help="camera capture width")
    src.add_argument("--height", type=int, default=None, help="camera capture height")
    src.add_argument("--fps", type=float, default=None, help="camera capture rate")
    src.add_argument("--fourcc", default="MJPG", help="V4L2 pixel format")
    src.add_argument("--loop", action="store_true", help="restart a file or image folder at its end")
    src.add_argument("--no-reconnect", dest="reconnect", action="store_false", help="end when a stream drops")
    src.add_argument("--max-reconnects", type=int, default=None, help="give up after N failed attempts in a row")
    mode = src.add_mutually_exclusive_group()
    mode.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                      help="keep only the newest frame (default for cameras and streams)")
    mode.add_argument("--every-frame", dest="realtime", action="store_false",
                      help="process every frame (default for files, folders, synthetic)")
    tr = p.add_argument_group("tracking (ByteTrack-style; defaults are ByteTrack's)")
    tr.add_argument("--track", action="store_true", help="give detections stable track IDs")
    tr.add_argument("--tracker-config", type=Path, default=None, metavar="YAML",
                    help="tracker options as YAML (high_thresh, low_thresh, new_track_thresh, match_thresh, "
                         "second_match_thresh, unconfirmed_match_thresh, fuse_score, min_hits, track_buffer, frame_rate); "
                         "the flags below override it")
    tr.add_argument("--track-high", dest="high_thresh", type=float, default=None,
                    help="score of a high detection (first association, may start a track) [0.5]")
    tr.add_argument("--track-low", dest="low_thresh", type=float, default=None,
                    help="lowest score a detection may continue a track with [0.1]")
    tr.add_argument("--track-new", dest="new_track_thresh", type=float, default=None, help="score to start a track [0.6]")
    tr.add_argument("--track-match", dest="match_thresh", type=float, default=None,
                    help="cost limit 1 - IoU*score of the first association [0.8]")
    tr.add_argument("--track-confirm", dest="min_hits", type=int, default=None,
                    help="consecutive frames before a track is confirmed and gets an ID [2]")
    tr.add_argument("--track-buffer", dest="track_buffer", type=int, default=None,
                    help="frames (at 30 FPS) a lost track is kept [30]")
    tr.add_argument("--zones", type=Path, default=None, metavar="YAML",
                    help="named zones (polygons) and counting lines per source; turns on --track")
    ev = p.add_argument_group("events")
    ev.add_argument("--events", default=None, metavar="FILE",
                    help="zone events (enter, exit, cross, loiter) as JSON lines to FILE, or - for stdout")
    ev.add_argument("--mqtt", default=None, metavar="HOST[:PORT]", help="publish events and zone counts to this MQTT broker")
    ev.add_argument("--mqtt-prefix", default="ssd-edge", help="MQTT topic prefix")
    ev.add_argument("--mqtt-qos", type=int, default=1, choices=(0, 1, 2), help="MQTT QoS of events and counts")
    ev.add_argument("--mqtt-buffer", type=int, default=10_000, help="events kept while the broker is unreachable")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--max-frames", type=int, default=None, help="stop after N frames (per source)")
    run_group.add_argument("--benchmark", type=int, default=None, metavar="N",
                           help="time N frames (per source) after a warm-up, print per-stage timings and backend-only "
                                "throughput (several sources: each one's FPS, the aggregate, the backend at the run's "
                                "batch and at batch 1)")
    run_group.add_argument("--json", dest="json_summary", default=None, metavar="PATH",
                           help="write the run summary (timings, FPS, drops) as JSON")
    run_group.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def default_outputs(benchmark: int | None) -> tuple[str, ...]:
    """No ``--output``: a window where there is a display, else JSON lines; nothing when benchmarking."""
    if benchmark is not None:
        return ()
    from edge_app.outputs.window import display_available

    return ("window",) if display_available() else ("-",)


TRACKER_FLAGS = ("high_thresh", "low_thresh", "new_track_thresh", "match_thresh", "min_hits", "track_buffer")


def analytics_from_args(args: argparse.Namespace) -> AnalyticsOptions | None:
    """``--track``/``--zones`` and the tracker flags (over ``--tracker-config``), or ``None`` when both are off."""
    if args.events and not args.zones:
        raise EdgeAppError("--events needs --zones FILE: events come from zones and lines")
    if args.mqtt and not args.zones:
        raise EdgeAppError("--mqtt needs --zones FILE: it publishes zone events and counts")
    if not (args.track or args.zones):
        given = [f for f in TRACKER_FLAGS if getattr(args, f) is not None]
        if given or args.tracker_config:
            raise EdgeAppError("tracker options need --track (or --zones)")
        return None
    from edge_app.analytics import AnalyticsOptions, TrackerOptions
    from edge_app.analytics.zones import load_zones

    tracker = TrackerOptions()
    if args.tracker_config:
        tracker = TrackerOptions.from_mapping(load_tracker_config(args.tracker_config))
    overrides = {f: getattr(args, f) for f in TRACKER_FLAGS if getattr(args, f) is not None}
    tracker = TrackerOptions.from_mapping(overrides, base=tracker)
    zones = load_zones(args.zones) if args.zones else {}
    return AnalyticsOptions(tracker=tracker, zones=zones, display_score=args.score_threshold)


def load_tracker_config(path: Path) -> dict[str, object]:
    """A ``--tracker-config`` YAML mapping (``yaml.safe_load``)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgeAppError(f"--tracker-config {path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise EdgeAppError(f"--tracker-config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise EdgeAppError(f"--tracker-config {path}: expected a mapping such as 'track_buffer: 60'")
    return data


def mqtt_from_args(args: argparse.Namespace) -> MqttOptions | None:
    if not args.mqtt:
        return None
    from edge_app.outputs.mqtt import MqttOptions, parse_mqtt

    host, port = parse_mqtt(args.mqtt)
    return MqttOptions(host=host, port=port, prefix=args.mqtt_prefix, qos=args.mqtt_qos, buffer=args.mqtt_buffer)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The parsed flags as one :class:`RunOptions`, each part built from its own flags.

    With tracking on, the detector keeps boxes down to the tracker's ``low_thresh`` (ByteTrack's
    second association needs them); ``--score`` still decides which untracked boxes are shown.
    """
    from edge_app.multisource import parse_sources

    sources, named = parse_sources(args.source)
    if args.batch is not None and (args.batch < 1 or not named):
        raise EdgeAppError("--batch needs several (or named) --source values and a value >= 1")
    hint = args.hint or ("THROUGHPUT" if len(sources) > 1 else "LATENCY")
    outputs = tuple(args.output) if args.output else default_outputs(args.benchmark)
    analytics = analytics_from_args(args)
    postprocess = PostprocessParams(score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
                                    top_k=args.top_k, max_detections=args.max_detections)
    if analytics is not None:
        postprocess = postprocess._replace(score_threshold=min(postprocess.score_threshold, analytics.tracker.low_thresh))
    return RunOptions(
        model=args.model, source=sources[0].uri if not named else ", ".join(f"{s.name}={s.uri}" for s in sources),
        sources=tuple(sources) if named else (), batch=args.batch, outputs=outputs, serve=args.serve, benchmark=args.benchmark,
        backend=BackendOptions(device=args.device, threads=args.threads, hint=hint, num_requests=args.num_requests,
                               xnnpack=args.xnnpack, cache_dir=args.cache_dir,
                               inference_precision=args.inference_precision, batch=1),
        capture=SourceOptions(width=args.width, height=args.height, fps=args.fps, fourcc=args.fourcc, loop=args.loop,
                              reconnect=args.reconnect, max_reconnects=args.max_reconnects),
        postprocess=postprocess,
        pipeline=PipelineOptions(realtime=args.realtime, in_flight=args.in_flight, max_frames=args.max_frames,
                                 show_fps=args.show_fps),
        analytics=analytics, events=args.events, mqtt=mqtt_from_args(args),
    )


def format_report(result: RunSummary) -> str:
    """The ``--benchmark`` table: per-stage p50/p90, app FPS, backend-only FPS and their ratio."""
    lines = [
        f"ssd-edge benchmark: {Path(result.model).name} on {result.backend}, threads {result.threads or 'default'}, "
        f"source {result.source}",
        f"  {'stage':<12}{'p50 ms':>9}{'p90 ms':>9}{'mean ms':>9}",
    ]
    for name, s in result.stages.items():
        lines.append(f"  {name:<12}{s['p50_ms']:>9.2f}{s['p90_ms']:>9.2f}{s['mean_ms']:>9.2f}")
    lines.append(f"  app: {result.fps:.1f} FPS over {result.frames} frames, {result.cores_used:.2f} cores busy "
                 f"(dropped {result.dropped}, corrupt {result.corrupt}, reconnects {result.reconnects})")
    for name, info in (result.sources or {}).items():
        lat = info["latency"]
        lines.append(f"  {name}: {info['fps']:.1f} FPS, {info['frames']} frames, latency p50 {lat['p50_ms']:.1f} ms "
                     f"(dropped {info['dropped']}, reconnects {info['reconnects']}, ended by {info['ended_by']})")
    if result.sources:
        rates = [info["fps"] for info in result.sources.values()]
        spread = (max(rates) - min(rates)) / max(rates) if max(rates) > 0 else 0.0
        lines.append(f"  aggregate: {result.fps:.1f} FPS over {len(rates)} sources, per-source spread "
                     f"{100 * spread:.1f} % ((max - min) / max), batch {result.batch} (mean {result.mean_batch:.2f})")
    for source, info in (result.analytics or {}).items():
        counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items())
        lines.append(f"  {source}: {info['tracks']} tracks, events {info['events'] or 'none'}" + (f"; {counts}" if counts else ""))
    if result.backend_fps:
        at = f" at batch {result.batch}" if result.batch else ""
        lines.append(f"  backend only{at}: {result.backend_fps:.1f} FPS, {result.backend_cores_used:.2f} cores busy; "
                     f"app / backend = {result.overlap_ratio:.2f}")
    if result.backend_fps_batch1 and result.batch and result.batch > 1:
        lines.append(f"  backend only at batch 1: {result.backend_fps_batch1:.1f} FPS; batch {result.batch} / "
                     f"{result.batch} calls of batch 1 = {result.backend_fps / result.backend_fps_batch1:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(options_from_args(args))
    except (EdgeAppError, ValueError, OSError) as exc:  # SidecarError is a ValueError
        logging.getLogger("edge_app").debug("error details", exc_info=True)
        return fail("ssd-edge", exc, EXIT_USAGE)
    except KeyboardInterrupt:
        print("ssd-edge: interrupted", file=sys.stderr)
        return 130
    if args.benchmark is not None:
        print(format_report(result), flush=True)
    else:
        logging.getLogger("edge_app").info(
            "%d frames in %.1f s (%.1f FPS), dropped %d, corrupt %d, reconnects %d; ended by %s",
            result.frames, result.seconds, result.fps, result.dropped, result.corrupt, result.reconnects, result.ended_by,
        )
    if args.json_summary:
        from ssd.atomic import atomic_write_text

        atomic_write_text(args.json_summary, json.dumps(result.to_dict(), indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

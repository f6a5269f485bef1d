"""Our tracker against ByteTrack's published ``BYTETracker``, on the same detection sequence.

    git clone https://github.com/ifzhang/ByteTrack /tmp/ByteTrack          # the reference (its yolox/tracker)
    python benchmarks/edge_tracking_reference.py --bytetrack /tmp/ByteTrack

The reference runs in its own virtual environment (``--venv``, created when missing with
Python's ``venv`` and what ``yolox/tracker`` imports: numpy 1.23 (it uses ``np.float``), scipy,
lap, cython_bbox, opencv-python-headless 4.8); its unused ``import torch`` is satisfied by an
empty stand-in module, nothing of its code is changed or copied. Both trackers get the
detections of :mod:`benchmarks.edge_tracking` (the simulated detector on the default sequence,
or ``--model`` for an SSD's) with ByteTrack's defaults (track_thresh 0.5, track_buffer 30,
match_thresh 0.8, mot20 False, 30 FPS).

Compared per frame: the set of output tracks, matched by box (max coordinate difference below
``--box-tol`` pixels), and the IDs: ours must map one-to-one onto the reference's over the whole
sequence. Numbering differs on purpose: ByteTrack gives tentative tracks an ID too, so its IDs
have gaps; ours are 1, 2, ... in order of confirmation. ``--plus-one-iou`` runs ours with the
reference's IoU (``cython_bbox``: ``+1`` pixel on every width and height) in place of its own,
to show whether a difference is that convention. Writes JSON (``--out``) and prints one line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import edge_tracking as et  # noqa: E402

from ssd.atomic import atomic_write_text  # noqa: E402

REFERENCE_PACKAGES = ["numpy==1.23.5", "scipy<1.16", "lap==0.5.13", "cython_bbox==0.1.5", "opencv-python-headless==4.8.1.78"]

RUNNER = r'''
import json, sys, types
import numpy as np
sys.modules["torch"] = types.ModuleType("torch")  # imported by byte_tracker.py, never used by it
nn = types.ModuleType("torch.nn"); sys.modules["torch.nn"] = nn
sys.modules["torch.nn.functional"] = types.ModuleType("torch.nn.functional")
sys.path.insert(0, sys.argv[1])
from yolox.tracker.byte_tracker import BYTETracker

class Args:
    track_thresh, track_buffer, match_thresh, mot20 = 0.5, 30, 0.8, False

data = np.load(sys.argv[2])
tracker = BYTETracker(Args(), frame_rate=30)
out = []
for i in range(int(data["frames"])):
    dets = data[f"d{i}"]
    tracks = tracker.update(dets.copy(), (1, 1), (1, 1)) if dets.shape[0] else tracker.update(np.zeros((0, 5)), (1, 1), (1, 1))
    out.append([[int(t.track_id)] + [float(v) for v in t.tlbr] for t in tracks])
json.dump(out, open(sys.argv[3], "w"))
'''


def ensure_venv(venv: Path) -> Path:
    """The reference's interpreter, creating its virtual environment on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REFERENCE_PACKAGES], check=True)
    return python


def plus_one_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of xyxy boxes as ``cython_bbox.bbox_overlaps`` computes it (the pixel-count
    convention: width ``x2 - x1 + 1``, height ``y2 - y1 + 1``)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt + 1.0, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def run_reference(python: Path, bytetrack: Path, detections: list, workdir: Path) -> list[list[list[float]]]:
    arrays = {"frames": np.array(len(detections))}
    for i, (boxes, scores, _labels) in enumerate(detections):
        arrays[f"d{i}"] = np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float64).reshape(-1, 5)
    np.savez(workdir / "dets.npz", **arrays)
    (workdir / "runner.py").write_text(RUNNER)
    subprocess.run([str(python), str(workdir / "runner.py"), str(bytetrack), str(workdir / "dets.npz"),
                    str(workdir / "ref.json")], check=True)
    return json.loads((workdir / "ref.json").read_text())


def compare(ours: list, reference: list, box_tol: float) -> dict[str, object]:
    """Frame-by-frame track sets and the ID correspondence (see the module docstring)."""
    mapping: dict[int, int] = {}
    reverse: dict[int, int] = {}
    frames_same = 0
    conflicts = []
    unmatched_ours = unmatched_ref = 0
    max_box_diff = 0.0
    for f, ((ids, boxes), ref) in enumerate(zip(ours, reference, strict=True)):
        ref_ids = np.array([r[0] for r in ref], np.int64)
        ref_boxes = np.array([r[1:] for r in ref], np.float64).reshape(-1, 4)
        diff = np.abs(boxes[:, None, :] - ref_boxes[None, :, :]).max(axis=2) if ids.size and ref_ids.size else np.zeros((ids.size, ref_ids.size))
        same = True
        used = set()
        for i in range(ids.size):
            j = int(np.argmin(diff[i])) if ref_ids.size else -1
            if j < 0 or diff[i, j] > box_tol or j in used:
                unmatched_ours += 1
                same = False
                continue
            used.add(j)
            max_box_diff = max(max_box_diff, float(diff[i, j]))
            a, b = int(ids[i]), int(ref_ids[j])
            if mapping.setdefault(a, b) != b or reverse.setdefault(b, a) != a:
                conflicts.append({"frame": f, "ours": a, "reference": b})
                same = False
        extra = ref_ids.size - len(used)
        if extra:
            unmatched_ref += extra
            same = False
        frames_same += same
    return {"frames": len(ours), "frames_identical": frames_same, "tracks_ours_only": unmatched_ours,
            "tracks_reference_only": unmatched_ref, "id_conflicts": conflicts[:20], "id_conflict_count": len(conflicts),
            "ids_ours": len(mapping), "max_box_diff_px": max_box_diff,
            "id_map_sample": dict(list(sorted(mapping.items()))[:12])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bytetrack", type=Path, required=True, help="a checkout of github.com/ifzhang/ByteTrack")
    p.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "ssd-edge-bytetrack-venv")
    p.add_argument("--model", type=Path, default=None, help="detections of this SSD artifact instead of the simulated ones")
    p.add_argument("--seed", type=int, default=et.DEFAULT_SCENE["seed"])
    p.add_argument("--frames", type=int, default=et.DEFAULT_SCENE["frames"])
    p.add_argument("--box-tol", type=float, default=0.01, help="pixels")
    p.add_argument("--plus-one-iou", action="store_true",
                   help="run ours with the reference's +1-pixel IoU (see the module doc)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "edge_tracking_reference.json")
    args = p.parse_args(argv)
    if not (args.bytetrack / "yolox" / "tracker" / "byte_tracker.py").exists():
        print(f"--bytetrack {args.bytetrack}: no yolox/tracker/byte_tracker.py there; clone github.com/ifzhang/ByteTrack",
              file=sys.stderr)
        return 2

    d = et.DEFAULT_SCENE
    scene = et.make_scene(d["width"], d["height"], d["objects"], args.seed)
    if args.model:
        detections = et.ssd_detections(args.model, scene, args.frames)
        detector = f"ssd {args.model.name}"
    else:
        detections = et.simulated_detections(scene, et.truth_sequence(scene, args.frames), seed=args.seed)
        detector = "simulated"
    if args.plus_one_iou:
        from unittest import mock

        import edge_app.analytics.tracker as tracker_module

        with mock.patch.object(tracker_module, "iou", plus_one_iou):
            ours = et.run_ours(detections)
        detector += ", ours with +1-pixel IoU"
    else:
        ours = et.run_ours(detections)
    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory(prefix="bytetrack_ref_") as tmp:
        reference = run_reference(python, args.bytetrack, detections, Path(tmp))
    result = compare(ours, reference, args.box_tol)
    commit = subprocess.run(["git", "-C", str(args.bytetrack), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or None
    report = {"benchmark": "edge_tracking_reference", "reference": "ifzhang/ByteTrack yolox/tracker/byte_tracker.py",
              "reference_commit": commit, "detector": detector, "seed": args.seed, **result,
              "command": " ".join(["python", "benchmarks/edge_tracking_reference.py", *(argv if argv is not None else sys.argv[1:])])}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"edge_tracking_reference {detector}: {result['frames_identical']}/{result['frames']} frames with the same tracks "
          f"and one-to-one IDs ({result['ids_ours']} IDs), {result['tracks_ours_only']} ours-only and "
          f"{result['tracks_reference_only']} reference-only track boxes, {result['id_conflict_count']} ID conflicts, "
          f"max box difference {result['max_box_diff_px']:.2e} px; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

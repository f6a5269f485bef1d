"""``ssd-synth``: a seeded synthetic detection dataset in VOC layout (the embedded default).

Four shape classes (circle, rectangle, triangle, star) of varied size, aspect and colour on
textured backgrounds (gradient, blurred noise, clutter lines), overlapping up to an IoU of
``max_overlap``. Each image is drawn from its own generator seeded by ``(seed, split, i)``,
so a dataset is reproducible image by image. Writes ``JPEGImages``, ``Annotations``,
``ImageSets/Main/{train,val,trainval}.txt``, ``labels.txt`` and ``synth.json`` (parameters).
Torch-free (numpy + OpenCV).

``ssd-synth --scene cross --out DIR`` instead renders labelled frames of the ``synthetic://``
camera source (:mod:`train.scene`): the data for a detector that is to run on that source.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from ssd.atomic import atomic_write_text

CLASSES = ("circle", "rectangle", "triangle", "star")
SPLIT_CODES = {"train": 1, "val": 2}


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic dataset; ``size`` is the side of the square images in pixels."""

    seed: int = 0
    num_train: int = 2000
    num_val: int = 300
    size: int = 128
    min_objects: int = 1
    max_objects: int = 5
    min_scale: float = 0.12
    max_scale: float = 0.55
    max_overlap: float = 0.3


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    import cv2

    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = t[None, :] if rng.random() < 0.5 else t[:, None]
    img = c0[None, None] * (1 - ramp[..., None]) + c1[None, None] * ramp[..., None]
    img = np.broadcast_to(img, (size, size, 3)).astype(np.float32)
    noise = rng.normal(0, 1, (size // 4, size // 4, 3)).astype(np.float32)
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    img = img + noise * rng.uniform(8, 30)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 6))):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def _shape_points(cls: str, cx: float, cy: float, w: float, h: float, rng: np.random.Generator) -> np.ndarray:
    """Polygon ``(V, 2)`` of one shape whose bounding box is about ``w x h`` around ``(cx, cy)``."""
    if cls == "circle":
        a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)], axis=1)
    if cls == "rectangle":
        return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    if cls == "triangle":
        apex = cx + rng.uniform(-0.4, 0.4) * w
        pts = np.array([[apex, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
        if rng.random() < 0.5:  # upside down
            pts[:, 1] = 2 * cy - pts[:, 1]
        return pts
    # star: five points, random rotation
    rot = rng.uniform(0, 2 * np.pi)
    a = rot + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
    return np.stack([cx + w / 2 * r * np.cos(a), cy + h / 2 * r * np.sin(a)], axis=1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros((0,))
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + areas - inter)


def draw_image(cfg: SynthConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: BGR uint8 ``(S, S, 3)``, boxes ``(K, 4)`` float32 pixel xyxy, class indices ``(K,)`` into CLASSES."""
    import cv2

    rng = np.random.default_rng([cfg.seed, SPLIT_CODES.get(split, 9), index])
    s = cfg.size
    img = _background(rng, s)
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        for _attempt in range(20):
            cls = int(rng.integers(len(CLASSES)))
            side = rng.uniform(cfg.min_scale, cfg.max_scale) * s
            aspect = rng.uniform(0.5, 2.0) if CLASSES[cls] == "rectangle" else rng.uniform(0.75, 1.33)
            w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
            cx, cy = rng.uniform(w / 2, s - w / 2) if w < s else s / 2, rng.uniform(h / 2, s - h / 2) if h < s else s / 2
            pts = _shape_points(CLASSES[cls], cx, cy, w, h, rng)
            box = np.concatenate([pts.min(axis=0), pts.max(axis=0)]).clip(0, s).astype(np.float32)
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            if len(boxes) and _iou(box, np.stack(boxes)).max() > cfg.max_overlap:
                continue
            x0, y0, x1, y1 = box.astype(int)
            local = img[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3).mean(axis=0)
            for _c in range(10):  # a colour that stands out from the local background
                colour = rng.uniform(0, 255, 3)
                if np.abs(colour - local).sum() > 150:
                    break
            shift = 4  # sub-pixel precision for cv2 drawing
            poly = np.round(pts * (1 << shift)).astype(np.int32)
            cv2.fillPoly(img, [poly], tuple(float(v) for v in colour), cv2.LINE_AA, shift)
            boxes.append(box)
            classes.append(cls)
            break
    return img, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def _voc_xml(image_id: str, size: int, boxes: np.ndarray, classes: np.ndarray) -> str:
    objects = "".join(
        f"  <object><name>{escape(CLASSES[c])}</name><difficult>0</difficult><bndbox>"
        f"<xmin>{b[0]:.1f}</xmin><ymin>{b[1]:.1f}</ymin><xmax>{b[2]:.1f}</xmax><ymax>{b[3]:.1f}</ymax>"
        f"</bndbox></object>\n"
        for b, c in zip(boxes, classes, strict=True)
    )
    return (
        f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{image_id}.jpg</filename>\n"
        f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n{objects}</annotation>\n"
    )


def generate(out: str | Path, cfg: SynthConfig) -> Path:
    """Write the dataset under ``out`` (created); returns ``out``. Existing files are overwritten."""
    import cv2

    out = Path(out)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids: dict[str, list[str]] = {}
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val)):
        ids[split] = []
        for i in range(n):
            image_id = f"{split}_{i:05d}"
            img, boxes, classes = draw_image(cfg, split, i)
            if not cv2.imwrite(str(out / "JPEGImages" / f"{image_id}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise OSError(f"cannot write {out / 'JPEGImages' / (image_id + '.jpg')}")
            (out / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, cfg.size, boxes, classes))
            ids[split].append(image_id)
    finish_voc_layout(out, ids, CLASSES, out / "synth.json", asdict(cfg))
    return out


def finish_voc_layout(out: Path, ids: dict[str, list[str]], classes: Sequence[str], meta: Path,
                      params: dict[str, Any]) -> None:
    """Write ``ImageSets/Main/{train,val,trainval}.txt`` from ``ids`` (split -> image ids),
    ``labels.txt``, and last ``meta`` (``params`` as JSON), which marks the dataset complete."""
    for split, names in (*ids.items(), ("trainval", ids["train"] + ids["val"])):
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    (out / "labels.txt").write_text("".join(f"{c}\n" for c in classes))
    atomic_write_text(meta, json.dumps(params, indent=2) + "\n")


def is_complete(out: Path, meta: Path, params: dict[str, Any]) -> bool:
    """True when ``out`` holds a complete generated dataset made with ``params`` (``meta`` says
    so); a stale ``meta`` is removed. ``FileExistsError`` when ``out`` holds something else."""
    if meta.is_file():
        try:
            if json.loads(meta.read_text()) == params:
                return True
        except json.JSONDecodeError:
            pass
        meta.unlink()
    elif out.exists() and any(out.iterdir()) and not (out / "JPEGImages").is_dir():
        raise FileExistsError(f"{out} exists and is not a generated dataset; choose another folder (data.root)")
    return False


def ensure_dataset(out: str | Path, cfg: SynthConfig) -> Path:
    """Generate ``out`` unless it already holds a complete dataset made with ``cfg``."""
    out = Path(out)
    return out if is_complete(out, out / "synth.json", asdict(cfg)) else generate(out, cfg)


def main(argv: list[str] | None = None) -> int:
    from ssd.cli import ArgumentParser, fail
    from train.scene import MOTIONS
    from train.scene import SceneDatasetConfig as Scene

    parser = ArgumentParser(prog="ssd-synth", description="A seeded synthetic detection dataset in VOC layout "
                            "(or, with --scene, labelled frames of the synthetic:// camera source).")
    parser.add_argument("--out", required=True, help="output folder (VOC layout)")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"default {SynthConfig.seed} (with --scene: {Scene.seed}, the first scene seed)")
    parser.add_argument("--num-train", type=int, default=SynthConfig.num_train, help="training images")
    parser.add_argument("--num-val", type=int, default=SynthConfig.num_val, help="validation images")
    parser.add_argument("--size", type=int, default=SynthConfig.size, help="image side in pixels")
    parser.add_argument("--max-objects", type=int, default=None,
                        help=f"default {SynthConfig.max_objects} (with --scene: shapes per sequence, default {Scene.max_objects})")
    scene = parser.add_argument_group("frames of the synthetic:// scene instead (train.scene)")
    scene.add_argument("--scene", choices=MOTIONS, default=None,
                       help="render labelled frames of synthetic://?motion=MOTION sequences")
    scene.add_argument("--width", type=int, default=Scene.width)
    scene.add_argument("--height", type=int, default=Scene.height)
    scene.add_argument("--train-sequences", type=int, default=Scene.train_sequences)
    scene.add_argument("--val-sequences", type=int, default=Scene.val_sequences)
    scene.add_argument("--frames-per-sequence", type=int, default=Scene.frames_per_sequence)
    scene.add_argument("--stride", type=int, default=Scene.stride, help="frames between two samples of a sequence")
    scene.add_argument("--min-objects", type=int, default=Scene.min_objects)
    scene.add_argument("--min-visible", type=float, default=Scene.min_visible,
                       help="objects less visible than this are marked difficult")
    args = parser.parse_args(argv)
    if args.scene:
        return _main_scene(args)
    max_objects = SynthConfig.max_objects if args.max_objects is None else args.max_objects
    if args.size < 32 or args.num_train < 0 or args.num_val < 0 or max_objects < 1:
        return fail("ssd-synth", "need --size >= 32, non-negative counts and --max-objects >= 1")
    cfg = SynthConfig(seed=SynthConfig.seed if args.seed is None else args.seed, num_train=args.num_train, num_val=args.num_val, size=args.size,
                      max_objects=max_objects, min_objects=min(SynthConfig.min_objects, max_objects))
    out = generate(args.out, cfg)
    print(f"ssd-synth: wrote {cfg.num_train} train + {cfg.num_val} val images ({cfg.size} px, classes {', '.join(CLASSES)}) to {out}")
    return 0


def _seed_range(seeds: list[int]) -> str:
    return f"seeds {seeds[0]}-{seeds[-1]}" if seeds else "no sequences"


def _main_scene(args: argparse.Namespace) -> int:
    from train.scene import (
        SCENE_CLASSES,
        SceneDatasetConfig,
        generate_scene_dataset,
        scene_seeds,
    )

    default = SceneDatasetConfig()
    cfg = SceneDatasetConfig(
        seed=default.seed if args.seed is None else args.seed, train_sequences=args.train_sequences,
        val_sequences=args.val_sequences, frames_per_sequence=args.frames_per_sequence, stride=args.stride,
        width=args.width, height=args.height, min_objects=args.min_objects,
        max_objects=default.max_objects if args.max_objects is None else args.max_objects, motion=args.scene,
        min_visible=args.min_visible,
    )
    try:
        cfg.check()
    except ValueError as exc:
        from ssd.cli import fail

        return fail("ssd-synth", exc)
    out = generate_scene_dataset(args.out, cfg)
    train, val = scene_seeds(cfg, "train"), scene_seeds(cfg, "val")
    print(f"ssd-synth: wrote {len(train) * cfg.frames_per_sequence} train ({_seed_range(train)}) + "
          f"{len(val) * cfg.frames_per_sequence} val ({_seed_range(val)}) frames of synthetic://?motion={cfg.motion} "
          f"({cfg.width}x{cfg.height}, classes {', '.join(SCENE_CLASSES)}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

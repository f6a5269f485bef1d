"""Camera-like training data: frames of the ``synthetic://`` scene with its true boxes, in VOC layout.

A detector meant for a camera is trained on that camera's kind of frames. This renders frames
of :class:`edge_app.sources.synthetic.SyntheticScene` (the ``synthetic://`` source, by default
``motion="cross"``: shapes that cross, occlude each other, leave and come back) at the source's
resolution, labelled from :meth:`SyntheticScene.truth` (amodal boxes clipped to the frame, and
the visible fraction of each shape):

- visible >= ``min_visible``: an object;
- 0 < visible < ``min_visible``: an object marked ``<difficult>1`` (VOC's flag for heavily
  occluded or truncated objects: training drops it unless ``data.keep_difficult``, mAP ignores
  it). The default 0.25 is the tracking benchmark's don't-care threshold, so the detector is
  taught exactly what the benchmark counts;
- visible 0 (entirely hidden or out of the frame): no object.

``<truncated>1`` marks a shape that reaches outside the frame. Each split is a set of whole
sequences: split ``train`` the scene seeds ``seed .. seed + train_sequences - 1``, ``val`` the
next ``val_sequences`` seeds, so a sequence is never seen in both, and a benchmark sequence
is unseen when its seed is outside :func:`scene_seeds` (the default ``seed`` 1000 leaves the
tracking benchmark's seeds 0-4 out). Each sequence has its own number of shapes and gives
``frames_per_sequence`` frames ``stride`` apart. Writes ``JPEGImages``, ``Annotations``,
``ImageSets/Main/{train,val,trainval}.txt``, ``labels.txt`` and ``scene.json`` (parameters,
written last). Torch-free (numpy + OpenCV). CLI: ``ssd-synth --scene cross`` (see
:mod:`train.synth`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from edge_app.sources.synthetic import MOTIONS, SyntheticScene
from train.synth import finish_voc_layout, is_complete

#: class names in the order of ``SyntheticScene.kind`` (0 rectangle, 1 circle, 2 triangle), so
#: model label ``kind + 1`` is the scene's shape
SCENE_CLASSES = ("rectangle", "circle", "triangle")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SceneDatasetConfig:
    """Parameters of a dataset rendered from the ``synthetic://`` scene (see the module doc).

    ``min_objects``/``max_objects``: shapes per sequence, drawn per sequence (inclusive);
    ``first_frame``: frame index of a sequence's first sample (the shapes' start positions are
    random, so frame 0 is as typical as any)."""

    seed: int = 1000
    train_sequences: int = 40
    val_sequences: int = 4
    frames_per_sequence: int = 50
    stride: int = 11
    first_frame: int = 0
    width: int = 640
    height: int = 480
    min_objects: int = 4
    max_objects: int = 12
    motion: str = "cross"
    min_visible: float = 0.25
    jpeg_quality: int = 95

    def check(self) -> None:
        """Raise ``ValueError`` with one line naming a bad parameter."""
        if self.width < 32 or self.height < 32:
            raise ValueError(f"scene size {self.width}x{self.height}: need width and height >= 32")
        if self.train_sequences < 0 or self.val_sequences < 0 or self.frames_per_sequence < 1 or self.stride < 1:
            raise ValueError("scene dataset: need non-negative sequence counts, frames per sequence >= 1 and stride >= 1")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"scene objects {self.min_objects}..{self.max_objects}: need 1 <= min <= max")
        if self.motion not in MOTIONS:
            raise ValueError(f"scene motion {self.motion!r}: use one of {', '.join(MOTIONS)}")
        if not 0.0 <= self.min_visible <= 1.0:
            raise ValueError(f"scene min_visible {self.min_visible}: need a fraction in [0, 1]")


def scene_seeds(cfg: SceneDatasetConfig, split: str) -> list[int]:
    """The scene seeds of a split's sequences (``train`` first, then ``val``; disjoint)."""
    if split == "train":
        return list(range(cfg.seed, cfg.seed + cfg.train_sequences))
    if split == "val":
        start = cfg.seed + cfg.train_sequences
        return list(range(start, start + cfg.val_sequences))
    raise ValueError(f"scene split {split!r}: use one of {', '.join(SPLITS)}")


def sequence_objects(cfg: SceneDatasetConfig, scene_seed: int) -> int:
    """Number of shapes of the sequence with this scene seed (drawn from its own generator)."""
    return int(np.random.default_rng([cfg.seed, scene_seed]).integers(cfg.min_objects, cfg.max_objects + 1))


def frame_indices(cfg: SceneDatasetConfig) -> list[int]:
    """The frame indices sampled from each sequence."""
    return [cfg.first_frame + cfg.stride * t for t in range(cfg.frames_per_sequence)]


@dataclass(frozen=True)
class SceneLabels:
    """The labels of one frame: ``boxes (N, 4)`` float64 xyxy pixels clipped to the frame,
    ``classes (N,)`` int64 indices into :data:`SCENE_CLASSES`, ``difficult (N,)`` and
    ``truncated (N,)`` bool, ``visible (N,)`` float; objects with visible 0 are left out."""

    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray
    visible: np.ndarray


def frame_labels(scene: SyntheticScene, index: int, min_visible: float) -> SceneLabels:
    """Labels of frame ``index`` of ``scene`` from its truth."""
    _, boxes, visible = scene.truth(index)
    full = scene.boxes(index)
    truncated = (full[:, 0] < 0) | (full[:, 1] < 0) | (full[:, 2] > scene.width) | (full[:, 3] > scene.height)
    keep = (visible > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return SceneLabels(boxes[keep], scene.kind[keep].astype(np.int64), visible[keep] < min_visible, truncated[keep],
                       visible[keep])


def voc_xml(image_id: str, width: int, height: int, labels: SceneLabels) -> str:
    """A VOC annotation (0-based pixel xyxy, as ``ssd-synth`` writes them)."""
    objects = "".join(
        f"  <object><name>{escape(SCENE_CLASSES[c])}</name><truncated>{int(t)}</truncated>"
        f"<difficult>{int(d)}</difficult><bndbox><xmin>{b[0]:.2f}</xmin><ymin>{b[1]:.2f}</ymin>"
        f"<xmax>{b[2]:.2f}</xmax><ymax>{b[3]:.2f}</ymax></bndbox></object>\n"
        for b, c, d, t in zip(labels.boxes, labels.classes, labels.difficult, labels.truncated, strict=True)
    )
    return (
        f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{image_id}.jpg</filename>\n"
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n{objects}</annotation>\n"
    )


def generate_scene_dataset(out: str | Path, cfg: SceneDatasetConfig) -> Path:
    """Write the dataset under ``out`` (created; existing files are overwritten); returns ``out``."""
    import cv2

    cfg.check()
    out = Path(out)
    meta = out / "scene.json"
    meta.unlink(missing_ok=True)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids: dict[str, list[str]] = {}
    for split in SPLITS:
        ids[split] = []
        for scene_seed in scene_seeds(cfg, split):
            scene = SyntheticScene(cfg.width, cfg.height, objects=sequence_objects(cfg, scene_seed), seed=scene_seed,
                                   motion=cfg.motion)
            for index in frame_indices(cfg):
                image_id = f"{split}_s{scene_seed}_f{index:05d}"
                path = out / "JPEGImages" / f"{image_id}.jpg"
                if not cv2.imwrite(str(path), scene.render(index), [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]):
                    raise OSError(f"cannot write {path}")
                labels = frame_labels(scene, index, cfg.min_visible)
                (out / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, cfg.width, cfg.height, labels))
                ids[split].append(image_id)
    finish_voc_layout(out, ids, SCENE_CLASSES, meta, asdict(cfg))
    return out


def ensure_scene_dataset(out: str | Path, cfg: SceneDatasetConfig) -> Path:
    """Render ``out`` unless it already holds a complete dataset made with ``cfg``."""
    out = Path(out)
    return out if is_complete(out, out / "scene.json", asdict(cfg)) else generate_scene_dataset(out, cfg)


__all__ = ["SCENE_CLASSES", "SceneDatasetConfig", "SceneLabels", "ensure_scene_dataset", "frame_indices", "frame_labels",
           "generate_scene_dataset", "scene_seeds", "sequence_objects", "voc_xml"]

"""A calibration set on disk: ``manifest.json`` plus the preprocessed inputs. numpy only.

Layout of ``calibration/sets/NAME/``::

    manifest.json   image ids, seed, source, input spec, labels, per-class counts, sha256s
    inputs.npy      (N, 3, H, W) uint8: ssd.preprocess.preprocess(frame, InputSpec(H, W, "NCHW",
                    "uint8", "RGB")) of each chosen image, i.e. RGB pixels at the model size
    holdout.npz     optional held-out images (not in inputs.npy) with their ground truth, for
                    accuracy-controlled quantization: inputs (M, 3, H, W) uint8, boxes (B, 4)
                    float32 xyxy in [0, 1], labels (B,) int64, difficult (B,) bool, image (B,)
                    int64 row in inputs

The model input is float RGB pixels in [0, 255], so uint8 holds it losslessly; each backend
casts or re-lays it out (NHWC for TFLite) when it reads the set. The folder is written to a
temporary name and renamed, so a set either exists whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssd.apstats import Truth
from ssd.preprocess import InputSpec
from ssd.sidecar import file_sha256

MANIFEST = "manifest.json"
INPUTS = "inputs.npy"
HOLDOUT = "holdout.npz"
MANIFEST_VERSION = 1
MIN_RECOMMENDED = 100


class CalibrationError(ValueError):
    """A missing, empty or inconsistent calibration set; the message says what to do."""


@dataclass(frozen=True)
class Holdout:
    """Held-out images with ground truth.

    inputs: ``(M, 3, H, W)`` uint8 RGB. boxes: ``(B, 4)`` float32 xyxy in ``[0, 1]``;
    labels: ``(B,)`` int64 ``1..C-1``; difficult: ``(B,)`` bool; image: ``(B,)`` int64
    index into ``inputs``.
    """

    inputs: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes ``(K, 4)`` xyxy in ``[0, 1]``, labels ``(K,)`` and difficult ``(K,)`` of image ``i``."""
        mask = self.image == i
        return self.boxes[mask], self.labels[mask], self.difficult[mask]

    def pixel_truth(self, i: int) -> Truth:
        """Ground truth of image ``i`` in pixels of the model input (boxes ``(K, 4)`` xyxy)."""
        boxes, labels, difficult = self.ground_truth(i)
        height, width = self.inputs.shape[2:]
        return Truth(boxes * np.array([width, height, width, height], np.float32), labels, difficult, width, height)


@dataclass(frozen=True)
class CalibrationSet:
    """A loaded calibration set.

    inputs: ``(N, 3, H, W)`` uint8 RGB pixels at the model input size.
    manifest: the parsed ``manifest.json``.
    manifest_sha256: sha256 of ``manifest.json`` (recorded in every artifact's sidecar).
    """

    root: Path
    inputs: np.ndarray
    manifest: dict[str, Any]
    manifest_sha256: str
    holdout: Holdout | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the stored inputs."""
        return int(self.inputs.shape[2]), int(self.inputs.shape[3])

    def batches(self, layout: str = "NCHW", dtype: str = "float32", limit: int | None = None) -> Iterator[np.ndarray]:
        """Batch-1 model inputs ``(1, 3, H, W)`` or ``(1, H, W, 3)`` in ``dtype`` (pixel values)."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            x = self.inputs[i : i + 1]
            if layout == "NHWC":
                x = x.transpose(0, 2, 3, 1)
            yield np.ascontiguousarray(x, dtype=dtype)

    def frames_bgr(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """The stored images as BGR uint8 frames ``(H, W, 3)`` at model size, for ``preprocess``."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            yield np.ascontiguousarray(self.inputs[i].transpose(1, 2, 0)[:, :, ::-1])


def stored_input_spec(height: int, width: int) -> InputSpec:
    """The form the set stores: RGB uint8 NCHW at the model size."""
    return InputSpec(height=height, width=width, layout="NCHW", dtype="uint8", color="RGB")


def array_sha256(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write_calibration_set(
    out: str | Path,
    inputs: np.ndarray,
    manifest: dict[str, Any],
    holdout: Holdout | None = None,
) -> Path:
    """Write a set folder atomically (temporary folder, then rename); returns the manifest path.

    ``manifest`` is completed here with the version, the inputs file, shape and sha256s.
    An existing set at ``out`` is replaced only once the new one is complete.
    """
    out = Path(out)
    if inputs.ndim != 4 or inputs.shape[1] != 3 or inputs.dtype != np.uint8:
        raise CalibrationError(f"calibration inputs must be (N, 3, H, W) uint8, got {inputs.dtype} {inputs.shape}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a set is an ordinary folder
    try:
        np.save(tmp / INPUTS, inputs, allow_pickle=False)
        manifest = dict(manifest)
        manifest["version"] = MANIFEST_VERSION
        manifest["num_images"] = int(inputs.shape[0])
        manifest["inputs"] = {
            "file": INPUTS,
            "shape": list(inputs.shape),
            "dtype": "uint8",
            "sha256": file_sha256(tmp / INPUTS),
        }
        manifest["image_sha256"] = [array_sha256(x) for x in inputs]
        if holdout is not None:
            np.savez(
                tmp / HOLDOUT,
                inputs=holdout.inputs,
                boxes=holdout.boxes,
                labels=holdout.labels,
                difficult=holdout.difficult,
                image=holdout.image,
            )
            manifest["holdout"] = {
                **dict(manifest.get("holdout", {})),
                "file": HOLDOUT,
                "num_images": int(holdout.inputs.shape[0]),
                "sha256": file_sha256(tmp / HOLDOUT),
            }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "set")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / MANIFEST


def load_calibration_set(path: str | Path, mmap: bool = True) -> CalibrationSet:
    """Load and check a set folder; raises one-line :class:`CalibrationError` on any problem."""
    root = Path(path)
    if not root.is_dir():
        raise CalibrationError(f"calibration set {root} does not exist; build one with ssd-calibrate (make calibrate)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        what = "is empty" if not any(root.iterdir()) else f"has no {MANIFEST}"
        raise CalibrationError(f"calibration set {root} {what}; build one with ssd-calibrate (make calibrate)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"calibration manifest {manifest_path} is unreadable ({exc}); re-run ssd-calibrate") from None
    if not isinstance(manifest, dict) or "inputs" not in manifest:
        raise CalibrationError(f"calibration manifest {manifest_path} is not an ssd-calibrate manifest; re-run ssd-calibrate")
    if int(manifest.get("version", 0)) > MANIFEST_VERSION:
        raise CalibrationError(f"calibration set {root} has manifest version {manifest['version']}; this build reads up to {MANIFEST_VERSION}")
    inputs_path = root / str(manifest["inputs"].get("file", INPUTS))
    if not inputs_path.is_file():
        raise CalibrationError(f"calibration set {root} lacks {inputs_path.name}; re-run ssd-calibrate")
    if file_sha256(inputs_path) != manifest["inputs"].get("sha256"):
        raise CalibrationError(f"{inputs_path} does not match the sha256 in its manifest; re-run ssd-calibrate")
    try:
        inputs = np.load(inputs_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{inputs_path} is not a readable .npy ({exc}); re-run ssd-calibrate") from None
    if inputs.ndim != 4 or inputs.shape[1] != 3 or inputs.dtype != np.uint8:
        raise CalibrationError(f"{inputs_path} holds {inputs.dtype} {inputs.shape}, expected (N, 3, H, W) uint8; re-run ssd-calibrate")
    if inputs.shape[0] == 0:
        raise CalibrationError(f"calibration set {root} holds no images; re-run ssd-calibrate with a dataset that has images")
    holdout = None
    info = manifest.get("holdout") or {}
    if info.get("file"):
        hp = root / str(info["file"])
        if not hp.is_file() or file_sha256(hp) != info.get("sha256"):
            raise CalibrationError(f"held-out file {hp} is missing or does not match its manifest; re-run ssd-calibrate")
        with np.load(hp, allow_pickle=False) as z:
            holdout = Holdout(z["inputs"], z["boxes"], z["labels"], z["difficult"], z["image"])
    return CalibrationSet(root, inputs, manifest, file_sha256(manifest_path), holdout)


def check_matches_model(calib: CalibrationSet, image_size: int, labels: list[str]) -> None:
    """Refuse a set built for another input size or label set (one-line :class:`CalibrationError`)."""
    h, w = calib.input_size
    if (h, w) != (image_size, image_size):
        raise CalibrationError(
            f"calibration set {calib.root} holds {w}x{h} inputs but the model takes {image_size}x{image_size}; "
            "re-run ssd-calibrate with this checkpoint"
        )
    set_labels = calib.manifest.get("labels")
    if set_labels is not None and list(set_labels) != list(labels):
        raise CalibrationError(
            f"calibration set {calib.root} was built for labels {set_labels}, the model has {labels}; "
            "re-run ssd-calibrate with this checkpoint"
        )

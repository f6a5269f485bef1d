"""What a calibration set's held-out images can resolve, from the FP32 model alone (before any export).

``ssd-calibrate`` prints it after writing the set (and ``ssd-convert --max-drop`` again before
its first export): PyTorch FP32 runs on the held-out images, its detections at the evaluation
thresholds (:data:`ssd.postprocess.EVAL`) are matched against the ground truth
(:func:`ssd.apstats.match_table`) and :func:`ssd.bootstrap.resolution` turns the matches into
the smallest mAP@0.5 drop (points) those images can tell from no drop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.sets import CalibrationError, CalibrationSet
from ssd.apstats import Truth, match_table
from ssd.bootstrap import Resolution, resolution
from ssd.postprocess import EVAL, decode_and_nms
from ssd.priors import default_boxes


def holdout_truths(calib: CalibrationSet) -> list[Truth]:
    """Pixel ground truth of every held-out image (boxes scaled from ``[0, 1]`` to the input size)."""
    holdout = calib.holdout
    if holdout is None or len(holdout) == 0:
        raise CalibrationError(f"{calib.root} has no held-out images (re-run ssd-calibrate with --holdout N, N > 0)")
    return [holdout.pixel_truth(i) for i in range(len(holdout))]


def holdout_resolution(checkpoint: str | Path, calib: CalibrationSet) -> tuple[float, Resolution]:
    """``(FP32 mAP@0.5 points on the held-out images, their Resolution)`` for ``checkpoint``."""
    import torch

    from train.checkpoint import CheckpointError, load_model

    try:
        loaded = load_model(checkpoint)
    except CheckpointError as exc:
        raise CalibrationError(str(exc)) from None
    truths = holdout_truths(calib)
    priors = default_boxes(loaded.spec)
    detections = []
    with torch.inference_mode():
        for i in range(len(truths)):
            x = torch.from_numpy(np.ascontiguousarray(calib.holdout.inputs[i : i + 1], dtype=np.float32))
            loc, conf = loaded.model(x)
            detections += decode_and_nms(loc.numpy(), conf.numpy(), priors, variances=loaded.spec.variances, **EVAL._asdict())
    table = match_table(truths, detections, loaded.labels)
    return 100.0 * table.map50(), resolution(table)

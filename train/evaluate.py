"""Run a model over a dataset split and score it with :func:`ssd.coco_eval.evaluate_detections`.

The one evaluation of a PyTorch model: ``ssd-train``'s periodic mAP, ``ssd-eval`` and the
PyTorch row of ``ssd-compare`` all call :func:`evaluate_model`, with the thresholds of
:data:`ssd.postprocess.EVAL` and the batch size and memory format the checkpoint's run
evaluated with (:func:`checkpoint_eval_settings`): a model's float results depend on the
batch and the memory format, so one checkpoint gives one mAP on one device.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from ssd.coco_eval import EvalResult, evaluate_detections
from ssd.data import DetectionDataset
from ssd.postprocess import EVAL, Detections, PostprocessParams, decode_and_nms
from ssd.priors import default_boxes
from ssd.specs import SSDSpec
from ssd.voc_eval import VOCResult, evaluate_voc
from train.loader import EvalSet, make_loader

#: what :func:`evaluate_model` can report
METRICS = ("coco", "voc07", "voc")


@torch.no_grad()
def predict(
    model: nn.Module,
    reader: DetectionDataset,
    spec: SSDSpec,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    params: PostprocessParams = EVAL,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> list[Detections]:
    """Detections (normalized xyxy) for every image of ``reader``, in order.

    The model sees each image resized to ``spec.image_size`` (RGB float 0..255); decoding and
    NMS are the shared numpy :func:`ssd.decode_and_nms`.
    """
    was_training = model.training
    model.eval()
    priors = default_boxes(spec)
    loader = make_loader(EvalSet(reader, spec.image_size), batch_size, workers)
    out: list[Detections] = []
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    try:
        for batch in loader:
            images = batch.images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
            images = images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            with amp:
                loc, conf = model(images)
            out += decode_and_nms(loc.float().cpu().numpy(), conf.float().cpu().numpy(), priors,
                                  variances=spec.variances, **params._asdict())
    finally:
        model.train(was_training)
    return out


DEFAULT_EVAL_BATCH_SIZE = 32


def checkpoint_eval_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``{"batch_size", "channels_last"}`` as the checkpoint's training run evaluated it (its
    ``eval.batch_size`` and ``runtime.channels_last``): keyword arguments of :func:`predict`
    that reproduce ``ssd-train``'s figures bit for bit on the same device."""
    config = checkpoint.get("config") or {}
    return {
        "batch_size": int((config.get("eval") or {}).get("batch_size", DEFAULT_EVAL_BATCH_SIZE)),
        "channels_last": bool((config.get("runtime") or {}).get("channels_last", False)),
    }


def score_detections(reader: DetectionDataset, detections: list[Detections], metric: str = "coco") -> EvalResult | VOCResult:
    """Score ``detections`` (one per image of ``reader``, in order) with ``metric``: ``coco``
    (pycocotools: mAP@0.5, mAP@[.5:.95], AR, per-class AP), ``voc07`` (11-point) or ``voc``
    (all-point VOC2010+ AP); difficult objects ignored."""
    truths = [reader.annotation(i) for i in range(len(reader))]
    if metric == "coco":
        return evaluate_detections(truths, detections, reader.label_names)
    return evaluate_voc(truths, detections, reader.label_names, metric=metric)


def evaluate_model(model: nn.Module, reader: DetectionDataset, spec: SSDSpec, device: torch.device,
                   metric: str = "coco", **kwargs) -> EvalResult | VOCResult:
    """mAP of ``model`` on ``reader`` with ``metric`` (see :func:`score_detections`); ``kwargs``
    go to :func:`predict`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    return score_detections(reader, predict(model, reader, spec, device, **kwargs), metric)


"""Run a model over a dataset split and score it with :func:`train.coco_eval.evaluate_detections`."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ssd.postprocess import Detections, decode_and_nms
from ssd.priors import default_boxes
from ssd.specs import SSDSpec
from train.coco_eval import EvalResult, evaluate_detections
from train.data import DetectionDataset
from train.loader import EvalSet, make_loader


@torch.no_grad()
def predict(
    model: nn.Module,
    reader: DetectionDataset,
    spec: SSDSpec,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    score_threshold: float = 0.01,
    nms_iou: float = 0.45,
    top_k: int = 200,
    max_detections: int = 100,
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
                                  variances=spec.variances, score_threshold=score_threshold,
                                  iou_threshold=nms_iou, top_k=top_k, max_detections=max_detections)
    finally:
        model.train(was_training)
    return out


def evaluate_model(model: nn.Module, reader: DetectionDataset, spec: SSDSpec, device: torch.device, **kwargs) -> EvalResult:
    """COCO-style mAP of ``model`` on ``reader`` (difficult objects ignored)."""
    detections = predict(model, reader, spec, device, **kwargs)
    truths = [reader.annotation(i) for i in range(len(reader))]
    return evaluate_detections(truths, detections, reader.label_names)


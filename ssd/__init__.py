"""The SSD definition every stage shares: specs, default boxes, box coding, postprocess.

numpy only: importing this package must never import torch or OpenCV.
"""

from ssd.box_coding import cxcywh_to_xyxy, decode, encode, pairwise_iou, xyxy_to_cxcywh
from ssd.nms import batched_nms
from ssd.postprocess import EVAL, LIVE, Detections, PostprocessParams, decode_and_nms
from ssd.priors import default_boxes, priors_per_map
from ssd.specs import SPECS, SSD300, SSD512, SSDLITE320, SSDLITE320_S08, TINY, SSDSpec, get_spec

__all__ = [
    "SPECS",
    "SSD300",
    "SSD512",
    "SSDLITE320",
    "SSDLITE320_S08",
    "TINY",
    "Detections",
    "EVAL",
    "LIVE",
    "PostprocessParams",
    "SSDSpec",
    "batched_nms",
    "cxcywh_to_xyxy",
    "decode",
    "decode_and_nms",
    "default_boxes",
    "encode",
    "get_spec",
    "pairwise_iou",
    "priors_per_map",
    "xyxy_to_cxcywh",
]

"""One frame through one artifact: preprocess -> backend -> decode + NMS.

This is the unit the streaming pipeline splits into stages, and the API a script uses to
run an artifact on single frames::

    with open_backend(path, threads=2) as backend:
        detector = Detector(backend, LIVE._replace(score_threshold=0.3))
        dets = detector.detect(frame_bgr)   # ssd.Detections, boxes xyxy in [0, 1]
"""

from __future__ import annotations

import numpy as np

from edge_app.backends.base import Backend
from edge_app.backends.endtoend import unpack
from edge_app.cv2_import import import_cv2
from ssd.postprocess import LIVE, Detections, PostprocessParams, decode_and_nms
from ssd.preprocess import preprocess
from ssd.priors import default_boxes


class Detector:
    """Preprocessing, inference and decode + NMS for one backend; priors computed once.

    ``post``: the thresholds (:class:`ssd.PostprocessParams`; the app's preset is
    :data:`ssd.postprocess.LIVE`). An end-to-end artifact applies its own (its sidecar's
    ``postprocess``) inside the graph; ``post`` can only narrow them.
    """

    def __init__(self, backend: Backend, post: PostprocessParams = LIVE) -> None:
        import_cv2()  # ssd.preprocess resizes with OpenCV: a missing cv2 is one line here, not a traceback mid-run
        self.backend = backend
        self.post = post
        self.spec = backend.sidecar.spec
        self.priors = default_boxes(self.spec)  # (P, 4) cxcywh in [0, 1]
        self.labels = np.asarray(backend.sidecar.labels, dtype=object)  # class c -> labels[c - 1]

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 BGR -> the backend's batch-1 input."""
        return preprocess(frame_bgr, self.backend.input_spec)

    def postprocess(self, loc: np.ndarray, conf: np.ndarray) -> Detections:
        """Head outputs of one image -> its :class:`ssd.Detections` (boxes xyxy in [0, 1])."""
        return self.postprocess_batch(loc, conf)[0]

    def postprocess_batch(self, loc: np.ndarray, conf: np.ndarray) -> list[Detections]:
        """Head outputs of ``N`` images, ``loc (N, P, 4)``, ``conf (N, P, C)`` -> one :class:`ssd.Detections` each.

        For an end-to-end artifact (decode + NMS in the graph, :mod:`edge_app.backends.endtoend`)
        the pair is ``(dets, counts)``: its detections are unpacked, then held to this detector's
        score threshold and detection limit where they are stricter than the graph's own.
        """
        if self.backend.sidecar.postprocess is not None:
            return [self._limit(d) for d in unpack(loc, conf)]
        return decode_and_nms(loc, conf, self.priors, variances=self.spec.variances, **self.post._asdict())

    def _limit(self, dets: Detections) -> Detections:
        keep = np.flatnonzero(dets.scores > self.post.score_threshold)[: self.post.max_detections]
        return Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep])

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """The whole chain, synchronously."""
        loc, conf = self.backend.infer(self.preprocess(frame_bgr))
        return self.postprocess(loc, conf)

    def label_names(self, labels: np.ndarray) -> list[str]:
        """Model class indices ``1..C-1`` -> names, vectorized."""
        return self.labels[np.asarray(labels, dtype=np.int64) - 1].tolist()

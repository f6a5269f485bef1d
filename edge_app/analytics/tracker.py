"""ByteTrack-style multi-object tracking: Kalman-predicted boxes, two IoU associations, stable IDs.

Per frame (ByteTrack, Zhang et al. 2022, as its published ``BYTETracker`` does it):

1. predict every confirmed track (tracked and lost) one frame ahead;
2. associate the high-score detections (``score >= high_thresh``) with them by IoU, the cost
   ``1 - IoU * score`` (``fuse_score``), optimally with a cost limit of ``match_thresh``;
3. associate the low-score detections (``low_thresh <= score < high_thresh``) with the tracks
   still unmatched that were tracked on the previous frame, cost ``1 - IoU``, limit
   ``second_match_thresh``; tracked tracks still unmatched become lost;
4. associate the remaining high-score detections with the tentative tracks (limit
   ``unconfirmed_match_thresh``); a tentative track is confirmed (and gets its ID) after
   ``min_hits`` consecutive matches, one that misses a frame is dropped;
5. start tentative tracks from the high-score detections left with ``score >= new_track_thresh``;
6. drop tracks lost for more than ``track_buffer`` frames (scaled by ``frame_rate / 30``), and of
   a tracked and a lost track that overlap by IoU > 0.85 the younger.

Assignment: :func:`scipy.optimize.linear_sum_assignment` on the cost matrix extended with
``limit / 2`` for leaving a row or column unmatched, the problem ByteTrack's ``lap.lapjv(...,
extend_cost=True, cost_limit=limit)`` solves. Differences from ByteTrack's code, on purpose:
IDs are numbered 1, 2, ... when a track is confirmed (ByteTrack numbers tentative tracks too, so
its IDs have gaps); IoU is the continuous one (ByteTrack's ``cython_bbox`` adds 1 pixel to
widths and heights); a detection keeps its class label (ByteTrack is class-agnostic, as this
tracker is in its matching).

All state lives in arrays (struct of arrays), so a frame costs a fixed number of numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from edge_app.analytics import kalman
from edge_app.errors import require
from ssd.box_coding import pairwise_iou

TRACKED, LOST = 0, 1


@dataclass(frozen=True)
class TrackerOptions:
    """Tracker parameters; the defaults are the ones ByteTrack publishes (``tools/demo_track.py``
    and ``BYTETracker``: track_thresh 0.5, low 0.1, new tracks at track_thresh + 0.1, match_thresh
    0.8, 0.5 and 0.7 for the second and tentative associations, track_buffer 30 at 30 FPS).

    high_thresh: detections at or above are "high" (first association, may start tracks).
    low_thresh: detections below are ignored; between the two they only continue tracks.
    new_track_thresh: a high detection left unmatched starts a track at or above this.
    match_thresh: cost limit ``1 - IoU * score`` of the first association.
    second_match_thresh: cost limit ``1 - IoU`` of the low-score association.
    unconfirmed_match_thresh: cost limit of tentative tracks against the remaining high boxes.
    fuse_score: multiply IoU by the detection score in the first and tentative associations.
    min_hits: consecutive matched frames before a track is confirmed and gets an ID (N).
    track_buffer: frames a lost track is kept (M) at 30 FPS, scaled by ``frame_rate / 30``.
    frame_rate: the source's frame rate (``None``: 30).
    """

    high_thresh: float = 0.5
    low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_thresh: float = 0.8
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.7
    fuse_score: bool = True
    min_hits: int = 2
    track_buffer: int = 30
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_thresh <= self.high_thresh <= 1.0:
            raise ValueError(f"tracker: need 0 <= low_thresh ({self.low_thresh}) <= high_thresh ({self.high_thresh}) <= 1")
        if self.min_hits < 1 or self.track_buffer < 0:
            raise ValueError(f"tracker: min_hits must be >= 1 and track_buffer >= 0 (got {self.min_hits}, {self.track_buffer})")
        for name in ("match_thresh", "second_match_thresh", "unconfirmed_match_thresh"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"tracker: {name} must be in (0, 1], got {getattr(self, name)}")

    @property
    def max_lost(self) -> int:
        """Frames a lost track survives: ``int(frame_rate / 30 * track_buffer)``."""
        return int((self.frame_rate or 30.0) / 30.0 * self.track_buffer)

    @classmethod
    def from_mapping(cls, values: dict[str, object], base: TrackerOptions | None = None) -> TrackerOptions:
        """``base`` (default: the defaults) with ``values`` applied; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"tracker: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        import dataclasses

        base = base or cls()
        for key, value in values.items():
            default = getattr(base, key) if key != "frame_rate" else 30.0
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (key == "frame_rate" and value is None)
            if not ok:
                kind = {bool: "true or false", int: "an integer"}.get(type(default), "a number")
                raise ValueError(f"tracker: {key} must be {kind}, got {value!r}")
        return dataclasses.replace(base, **values)


@dataclass
class Tracks:
    """The confirmed tracks matched on one frame (every output track has a detection this frame).

    ids: ``(M,)`` int64 track IDs, 1, 2, ... in order of confirmation.
    boxes: ``(M, 4)`` float64 xyxy pixels, the Kalman state after this frame's update.
    det_index: ``(M,)`` int64 index of the matched detection in the frame's input.
    labels: ``(M,)`` int64 class of that detection; scores: ``(M,)`` its score.
    removed: IDs of confirmed tracks dropped on this frame (lost for longer than the buffer,
        or duplicates); they never come back.
    """

    ids: np.ndarray
    boxes: np.ndarray
    det_index: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    removed: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _lsa():
    return require("scipy.optimize", "tracking needs scipy: pip install 'ssd-edge[edge]' (or pip install scipy)").linear_sum_assignment


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching where a pair costs ``cost[i, j]`` and leaving a row or a column
    unmatched costs ``limit / 2`` (so no pair above ``limit`` is ever taken).

    Returns ``(rows, cols, unmatched_rows, unmatched_cols)`` as int arrays; rows ascending.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.arange(n), np.arange(m)
    ext = np.full((n + m, n + m), limit / 2.0)
    ext[n:, m:] = 0.0
    ext[:n, :m] = cost
    rows, cols = _lsa()(ext)
    keep = (rows < n) & (cols < m)
    rows, cols = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
    free_rows = np.ones(n, bool)
    free_rows[rows] = False
    free_cols = np.ones(m, bool)
    free_cols[cols] = False
    return rows, cols, np.flatnonzero(free_rows), np.flatnonzero(free_cols)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of xyxy boxes (:func:`ssd.box_coding.pairwise_iou`), 0 where undefined."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    out = pairwise_iou(a, b)
    out[np.isnan(out)] = 0.0
    return out


class ByteTracker:
    """Tracks of one source. ``update(boxes, scores, labels)`` once per frame, in order."""

    def __init__(self, options: TrackerOptions | None = None) -> None:
        _lsa()  # a missing scipy fails at start-up, not on the first frame
        self.options = options or TrackerOptions()
        self.frame = 0
        self.next_id = 1
        self.created = 0  # tentative tracks started
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._id = np.zeros(0, np.int64)  # 0 while tentative
        self._state = np.zeros(0, np.int64)
        self._hits = np.zeros(0, np.int64)
        self._start = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)  # frame of the last match
        self._label = np.zeros(0, np.int64)
        self._score = np.zeros(0, np.float64)
        self._det = np.zeros(0, np.int64)  # detection matched on the current frame, -1: none

    @property
    def active(self) -> int:
        """Confirmed tracks now tracked or lost."""
        return int(np.count_nonzero(self._id))

    def _match(self, rows: np.ndarray, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
               labels: np.ndarray) -> None:
        """Kalman-update tracks ``rows`` with detections ``dets`` (indices into the frame's input),
        in one batch for the frame's three associations."""
        if rows.size == 0:
            return
        self._mean[rows], self._cov[rows] = kalman.update(self._mean[rows], self._cov[rows],
                                                          kalman.xyxy_to_xyah(boxes[dets]))
        self._state[rows] = TRACKED
        self._hits[rows] += 1
        self._last[rows] = self.frame
        self._label[rows] = labels[dets]
        self._score[rows] = scores[dets]
        self._det[rows] = dets

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None) -> Tracks:
        """One frame's detections -> its confirmed, matched tracks.

        boxes: ``(K, 4)`` xyxy pixels; scores: ``(K,)`` in [0, 1]; labels: ``(K,)`` int classes.
        """
        opt = self.options
        self.frame += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.zeros(scores.shape[0], np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
        # a box without area (a degenerate decode) would make the Kalman update singular
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        high = np.flatnonzero(valid & (scores >= opt.high_thresh))
        low = np.flatnonzero(valid & (scores >= opt.low_thresh) & (scores < opt.high_thresh))
        n = self._id.shape[0]
        self._det[:] = -1

        confirmed = self._id > 0
        was_tracked = self._state == TRACKED
        # ByteTrack predicts the confirmed tracks (a lost one with its height velocity zeroed) and
        # tentative tracks only once they have moved (min_hits > 2); a fresh one stays where it began
        move = confirmed | (self._hits > 1)
        if move.any():
            mean = self._mean[move]
            mean[self._state[move] != TRACKED, 7] = 0.0
            self._mean[move], self._cov[move] = kalman.predict(mean, self._cov[move])
        predicted = kalman.xyah_to_xyxy(self._mean) if n else np.zeros((0, 4))

        # 1. confirmed tracks (tracked and lost) x high detections
        pool = np.flatnonzero(confirmed)
        sim = iou(predicted[pool], boxes[high])
        cost = 1.0 - (sim * scores[high][None, :] if opt.fuse_score else sim)
        rows, cols, free_pool, free_high = assign(cost, opt.match_thresh)
        matched_rows, matched_dets = [pool[rows]], [high[cols]]

        # 2. confirmed tracks tracked until the last frame, still unmatched x low detections
        rest = pool[free_pool]
        rest = rest[was_tracked[rest]]
        rows, cols, free_rest, _ = assign(1.0 - iou(predicted[rest], boxes[low]), opt.second_match_thresh)
        matched_rows.append(rest[rows])
        matched_dets.append(low[cols])
        self._state[rest[free_rest]] = LOST

        # 3. tentative tracks x the high detections left
        tentative = np.flatnonzero(~confirmed)
        left = high[free_high]
        sim = iou(predicted[tentative], boxes[left])
        cost = 1.0 - (sim * scores[left][None, :] if opt.fuse_score else sim)
        rows, cols, free_tentative, free_left = assign(cost, opt.unconfirmed_match_thresh)
        matched_rows.append(tentative[rows])
        matched_dets.append(left[cols])
        self._match(np.concatenate(matched_rows), np.concatenate(matched_dets), boxes, scores, labels)
        matched_tentative = tentative[rows]
        self._confirm(matched_tentative[self._hits[matched_tentative] >= opt.min_hits])

        keep = np.ones(n, bool)
        keep[tentative[free_tentative]] = False
        lost_too_long = (self._state == LOST) & (self.frame - self._last > opt.max_lost)
        removed = self._id[lost_too_long & confirmed].tolist()
        keep &= ~lost_too_long

        # 4. new tentative tracks
        new = left[free_left]
        new = new[scores[new] >= opt.new_track_thresh]
        if not keep.all():
            self._compact(keep)
        if new.size:
            self._start_tracks(new, boxes, scores, labels)
        removed += self._remove_duplicates()

        out = np.flatnonzero((self._id > 0) & (self._state == TRACKED) & (self._last == self.frame))
        return Tracks(
            ids=self._id[out].copy(), boxes=kalman.xyah_to_xyxy(self._mean[out]), det_index=self._det[out].copy(),
            labels=self._label[out].copy(), scores=self._score[out].copy(), removed=removed,
        )

    def _confirm(self, rows: np.ndarray) -> None:
        if rows.size:
            self._id[rows] = np.arange(self.next_id, self.next_id + rows.size)
            self.next_id += int(rows.size)

    def _start_tracks(self, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(boxes[dets]))
        k = dets.size
        first = self._id.shape[0]
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._id = np.concatenate([self._id, np.zeros(k, np.int64)])
        self._state = np.concatenate([self._state, np.full(k, TRACKED)])
        self._hits = np.concatenate([self._hits, np.ones(k, np.int64)])
        self._start = np.concatenate([self._start, np.full(k, self.frame)])
        self._last = np.concatenate([self._last, np.full(k, self.frame)])
        self._label = np.concatenate([self._label, labels[dets]])
        self._score = np.concatenate([self._score, scores[dets]])
        self._det = np.concatenate([self._det, dets])
        self.created += k
        # ByteTrack activates the tracks of its first frame at once
        if self.frame == 1 or self.options.min_hits <= 1:
            self._confirm(np.arange(first, first + k))

    def _compact(self, keep: np.ndarray) -> None:
        for name in ("_mean", "_cov", "_id", "_state", "_hits", "_start", "_last", "_label", "_score", "_det"):
            setattr(self, name, getattr(self, name)[keep])

    def _remove_duplicates(self) -> list[int]:
        """Of a tracked and a lost track overlapping by IoU > 0.85, drop the one seen for fewer
        frames (the tracked one on a tie), as ByteTrack's ``remove_duplicate_stracks``."""
        tracked = np.flatnonzero(self._state == TRACKED)
        lost = np.flatnonzero(self._state == LOST)
        if tracked.size == 0 or lost.size == 0:
            return []
        xyxy = kalman.xyah_to_xyxy(self._mean)
        p, q = np.nonzero(iou(xyxy[tracked], xyxy[lost]) > 0.85)
        if p.size == 0:
            return []
        age = self._last - self._start
        drop = np.unique(np.where(age[tracked[p]] > age[lost[q]], lost[q], tracked[p]))
        removed = self._id[drop][self._id[drop] > 0].tolist()
        keep = np.ones(self._id.shape[0], bool)
        keep[drop] = False
        self._compact(keep)
        return removed

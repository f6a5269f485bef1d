"""A constant-velocity Kalman filter on boxes, batched over tracks (numpy only).

State per track, 8 values: ``(cx, cy, a, h, vcx, vcy, va, vh)``: box centre in pixels, aspect
ratio ``a = w / h``, height ``h`` and their velocities per frame. Measurements are
``(cx, cy, a, h)``. The noise model is the one of DeepSORT and ByteTrack: position and velocity
standard deviations proportional to the box height (1/20 and 1/160 of it), the aspect ratio's
fixed (1e-2 / 1e-5 in the motion, 1e-1 in the measurement).

Every function takes ``(N, 8)`` means and ``(N, 8, 8)`` covariances and works on all N tracks at
once, so a frame costs a handful of numpy calls whatever the number of tracks.
"""

from __future__ import annotations

import numpy as np

NDIM = 4
STD_POSITION = 1.0 / 20.0
STD_VELOCITY = 1.0 / 160.0

#: x_{t+1} = F x_t with dt = 1 frame
MOTION = np.eye(2 * NDIM)
MOTION[np.arange(NDIM), NDIM + np.arange(NDIM)] = 1.0


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` xyxy -> ``(N, 4)`` ``(cx, cy, w / h, h)`` (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.empty((boxes.shape[0], 4))
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out[:, 0] = boxes[:, 0] + w / 2
    out[:, 1] = boxes[:, 1] + h / 2
    out[:, 2] = w / np.maximum(h, 1e-9)
    out[:, 3] = h
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """``(N, >=4)`` ``(cx, cy, a, h, ...)`` -> ``(N, 4)`` xyxy."""
    out = np.empty((xyah.shape[0], 4))
    w = xyah[:, 2] * xyah[:, 3]
    out[:, 0] = xyah[:, 0] - w / 2
    out[:, 1] = xyah[:, 1] - xyah[:, 3] / 2
    out[:, 2] = out[:, 0] + w
    out[:, 3] = out[:, 1] + xyah[:, 3]
    return out


def _diag(std: np.ndarray) -> np.ndarray:
    """``(N, D)`` standard deviations -> ``(N, D, D)`` diagonal covariances."""
    n, d = std.shape
    out = np.zeros((n, d * d))
    out[:, :: d + 1] = std * std
    return out.reshape(n, d, d)


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from ``(N, 4)`` xyah measurements: zero velocity, wide velocity uncertainty."""
    m = np.asarray(measurements, dtype=np.float64)
    n = m.shape[0]
    mean = np.concatenate([m, np.zeros((n, NDIM))], axis=1)
    h = m[:, 3]
    pos, vel = 2 * STD_POSITION * h, 10 * STD_VELOCITY * h
    std = np.stack([pos, pos, np.full(n, 1e-2), pos, vel, vel, np.full(n, 1e-5), vel], axis=1)
    return mean, _diag(std)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track: ``x = F x``, ``P = F P F^T + Q(h)``."""
    h = mean[:, 3:4]
    std = np.empty_like(mean)
    std[:, [0, 1, 3]] = STD_POSITION * h
    std[:, [4, 5, 7]] = STD_VELOCITY * h
    std[:, 2] = 1e-2
    std[:, 6] = 1e-5
    mean = mean @ MOTION.T
    cov = MOTION @ cov @ MOTION.T + _diag(std)
    return mean, cov


def update(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct each track ``i`` with its measurement ``measurements[i]`` (xyah), batched.

    ``S = H P H^T + R(h)``, gain ``K = P H^T S^-1`` (DeepSORT and ByteTrack solve it with a
    Cholesky factorization; ``S`` is a symmetric positive definite 4x4, so one batched LU solve
    gives the same to rounding); with ``H = [I 0]`` the projection is a slice.
    """
    n = mean.shape[0]
    pos = STD_POSITION * mean[:, 3]
    std = np.empty((n, NDIM))
    std[:, 0] = std[:, 1] = std[:, 3] = pos
    std[:, 2] = 1e-1
    projected_mean = mean[:, :NDIM]
    s = cov[:, :NDIM, :NDIM] + _diag(std)
    pht = cov[:, :, :NDIM]  # P H^T: (N, 8, 4)
    gain = np.transpose(np.linalg.solve(s, np.transpose(pht, (0, 2, 1))), (0, 2, 1))  # (N, 8, 4)
    innovation = np.asarray(measurements, dtype=np.float64) - projected_mean
    mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    cov = cov - gain @ s @ np.transpose(gain, (0, 2, 1))
    return mean, cov

"""The standard robot user (click simulator) of interactive segmentation (BRS, RITM, SimpleClick, SegAgent).

Given the prediction P, the ground truth G and the valid-pixel map V (ignore label -1 excluded):

1. FN = G & ~P & V and FP = ~G & P & V.
2. Each is zero-padded by one pixel (so the image border counts as a boundary), its exact Euclidean
   distance transform is taken (``cv2.distanceTransform(m, DIST_L2, 0)``), the padding is cropped and
   already-clicked pixels are zeroed.
3. If max(DT_FN) > max(DT_FP) (strict: ties go negative) the click is positive at the arg-max of DT_FN,
   else negative at the arg-max of DT_FP; the first arg-max in row-major order.
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from hlmat_env.actions import Click


def _padded_distance(m: np.ndarray) -> np.ndarray:
    padded = np.pad(m.astype(np.uint8), 1, mode="constant")
    return cv2.distanceTransform(padded, cv2.DIST_L2, 0)[1:-1, 1:-1]


def error_distances(
    target: np.ndarray, pred: np.ndarray, clicked: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distance maps (float32 HxW) of the false-negative and false-positive regions (steps 1-2)."""
    valid = target >= 0
    gt = target > 0
    pred = pred.astype(bool)
    dt_fn = _padded_distance(gt & ~pred & valid)
    dt_fp = _padded_distance(~gt & pred & valid)
    if clicked is not None:
        dt_fn[clicked] = 0
        dt_fp[clicked] = 0
    return dt_fn, dt_fp


def _squared(dt: np.ndarray) -> np.ndarray:
    """Exact integer squared distances (float64 HxW) from float32 Euclidean distances (exact below ~2000 px)."""
    return np.rint(dt.astype(np.float64) ** 2)


def next_click(target: np.ndarray, pred: np.ndarray, clicked: np.ndarray | None = None) -> Click | None:
    """The robot user's next click.

    Args:
        target: int HxW ground truth, 1 object, 0 background, -1 ignore (a bool mask also works).
        pred: bool HxW current prediction.
        clicked: optional bool HxW map of pixels clicked so far (they are never clicked again).

    Returns:
        The :class:`Click` in pixel coordinates, or ``None`` when no (unclicked) error pixel is left.
    """
    dt_fn, dt_fp = error_distances(np.asarray(target).astype(np.int8), pred, clicked)
    # Compare exact squared distances (integers): OpenCV's float32 distances of tied pixels can differ in the
    # last bit from run to run (its SIMD and scalar paths round differently), which made ties break by noise.
    d2_fn, d2_fp = _squared(dt_fn), _squared(dt_fp)
    fn_max, fp_max = float(d2_fn.max()), float(d2_fp.max())
    if fn_max == 0.0 and fp_max == 0.0:
        return None
    positive = fn_max > fp_max
    d2 = d2_fn if positive else d2_fp
    row, col = np.unravel_index(int(np.argmax(d2)), d2.shape)  # ties: the first pixel in row-major order
    return Click(int(col), int(row), positive)


def clicked_map(clicks: Iterable[Click], shape: tuple[int, int]) -> np.ndarray:
    """Bool HxW map with the clicked pixels set."""
    m = np.zeros(shape, dtype=bool)
    for c in clicks:
        m[c.y, c.x] = True
    return m


class RobotUser:
    """Stateful wrapper of :func:`next_click` that remembers its clicks (RITM's ``Clicker``).

    Args:
        target: int HxW ground truth (1 object, 0 background, -1 ignore).
    """

    def __init__(self, target: np.ndarray):
        self.target = np.asarray(target).astype(np.int8)
        self.clicks: list[Click] = []

    def click(self, pred: np.ndarray) -> Click | None:
        """Next click for prediction ``pred`` (bool HxW); it is remembered so it is never repeated."""
        c = next_click(self.target, pred, clicked_map(self.clicks, self.target.shape))
        if c is not None:
            self.clicks.append(c)
        return c

    def get_state(self) -> list[Click]:
        """The clicks given so far (a copy), for :meth:`set_state`."""
        return list(self.clicks)

    def set_state(self, clicks: list[Click]) -> None:
        """Restore the clicks given so far (from :meth:`get_state`)."""
        self.clicks = list(clicks)

"""The peer segmenter: OpenCV's ``cv2.grabCut`` (GMM colour models + graph cut) seeded by the clicks.

Registered as ``"grabcut"``. It exists as the reference that the default segmenter is measured against
(``hlmat bench-segmenters``); it is accurate but slow (about 0.6 s per click on a 640x480 image).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from hlmat_env.actions import Click
from hlmat_env.segmenters.base import Prediction


class GrabCutSegmenter:
    """``cv2.grabCut`` seeded by clicks (and the previous mask or a box).

    Seeds: a disc of ``radius`` pixels around each click is hard foreground (positive) or hard background
    (negative). The previous mask, when given, marks "probable foreground" and the rest "probable
    background"; without one, a box prompt (xywh) marks its inside probable foreground, and otherwise a
    disc of ``init_radius`` pixels around each positive click does. Without negative clicks or a box, the
    image border (``border`` pixels wide) is hard background, so that the background colour model has
    samples. ``cv2.setRNGSeed(0)`` before each call makes the k-means initialisation deterministic.

    Args:
        iterations: GrabCut iterations per prediction (re-estimating the GMMs and re-cutting).
        radius: seed disc radius in pixels.
        init_radius: probable-foreground disc radius around positive clicks when there is no previous mask.
        border: width in pixels of the hard-background frame used without negative clicks or a box.
    """

    name = "grabcut"

    def __init__(self, iterations: int = 3, radius: int = 5, init_radius: int = 40, border: int = 3):
        self.iterations = iterations
        self.radius = radius
        self.init_radius = init_radius
        self.border = border
        self.image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Keep the image (uint8 HxWx3 RGB); GrabCut has no per-image precomputation to reuse."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
        self.image = np.ascontiguousarray(image[..., ::-1])  # OpenCV's BGR order

    def predict(
        self, clicks: Sequence[Click], prev: Prediction | None = None, box: Sequence[int] | None = None
    ) -> Prediction:
        """Mask (bool HxW) for the clicks so far; see the class docstring for the seeding."""
        if self.image is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        h, w = self.image.shape[:2]
        has_prev = prev is not None and prev.mask.any()
        if not any(c.positive for c in clicks) and not has_prev and box is None:
            return Prediction(np.zeros((h, w), bool))
        gc = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        if has_prev:
            gc[prev.mask] = cv2.GC_PR_FGD
        elif box is not None:
            x, y, bw, bh = (int(v) for v in box)
            gc[:] = cv2.GC_BGD
            gc[max(0, y) : y + bh, max(0, x) : x + bw] = cv2.GC_PR_FGD
        else:
            for c in clicks:
                if c.positive:
                    cv2.circle(gc, (c.x, c.y), self.init_radius, int(cv2.GC_PR_FGD), -1)
        if box is None and all(c.positive for c in clicks):
            b = self.border
            for sl in ((slice(0, b), slice(None)), (slice(h - b, h), slice(None)),
                       (slice(None), slice(0, b)), (slice(None), slice(w - b, w))):
                gc[sl] = np.where(gc[sl] == cv2.GC_PR_FGD, cv2.GC_PR_FGD, cv2.GC_BGD)
        for c in clicks:
            cv2.circle(gc, (c.x, c.y), self.radius, int(cv2.GC_FGD if c.positive else cv2.GC_BGD), -1)
        fg_like = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        if fg_like.all() or not fg_like.any():
            return Prediction(fg_like.copy())
        cv2.setRNGSeed(0)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(self.image, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        mask = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        return Prediction(mask)

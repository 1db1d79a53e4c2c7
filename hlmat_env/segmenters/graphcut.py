"""The default weight-free segmenter: a click-seeded colour-histogram graph cut on a downscaled grid,
upsampled to full resolution with an edge-aware (guided) filter.

Registered as ``"default"`` and ``"graphcut"``. It uses only the image, the clicks so far and the previous
mask; it never sees the target. Deterministic (no random initialisation anywhere).

Method (a GrabCut-style energy with few, principled parameters, not tuned image by image):

1. ``set_image``: downscale so that the long side is at most ``side`` pixels (INTER_AREA); quantise colours
   into ``bins``^3 RGB bins; contrast-sensitive Potts weights ``gamma * exp(-beta |I_p - I_q|^2)`` with
   ``beta = 1 / (2 mean |I_p - I_q|^2)`` (Boykov-Jolly / GrabCut); the min-cut graph (:class:`GridCut`).
2. ``predict``: hard seeds are discs of ``radius`` working pixels around the clicks. Colour histograms
   (smoothed, ``-log`` likelihood unaries) are learnt from the previous mask (foreground) and its complement,
   or, without one, from a box, or from discs of ``init_frac`` of the long side around the positive clicks
   against the rest of the image. ``iterations`` rounds of cut + re-learning (GrabCut's EM).
3. Only foreground components that hold a positive click are kept (the object is connected to its clicks).
4. With a previous mask, steps 2-3 re-cut only a window around the newest click (the rest of the mask is
   kept; see :meth:`GraphCutSegmenter._local_update`): about 15 ms per click instead of a full-grid cut.
5. The working-resolution mask is upsampled and refined with a guided filter on the full-resolution grey
   image (only inside the changed box after a local re-cut).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from hlmat_env.actions import Click
from hlmat_env.segmenters.base import Prediction
from hlmat_env.segmenters.gridcut import INF_COST, GridCut


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: ``src`` (float32 HxW) smoothed along the edges of ``guide`` (float32 HxW
    in [0, 1]); returns float32 HxW."""
    k = (2 * radius + 1, 2 * radius + 1)
    mean_i = cv2.boxFilter(guide, -1, k)
    mean_p = cv2.boxFilter(src, -1, k)
    cov_ip = cv2.boxFilter(guide * src, -1, k) - mean_i * mean_p
    var_i = cv2.boxFilter(guide * guide, -1, k) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return cv2.boxFilter(a, -1, k) * guide + cv2.boxFilter(b, -1, k)


class GraphCutSegmenter:
    """Click-seeded colour-histogram graph cut at a working resolution (see the module docstring).

    Args:
        side: long side of the working grid in pixels (smaller images are used as they are).
        gamma: weight of the contrast-sensitive smoothness term (GrabCut's 50).
        bins: colour histogram bins per RGB channel.
        smooth: Gaussian smoothing of the histograms, in bins.
        iterations: rounds of min cut + colour-model re-learning per prediction.
        radius: hard-seed disc radius around each click, in working pixels.
        init_frac: foreground-model disc radius around positive clicks when there is no previous mask or
            box, as a fraction of the working long side.
        guide_radius: guided-filter window radius in full-resolution pixels (0: plain bilinear upsampling).
        guide_eps: guided-filter regulariser (grey levels in [0, 1]).
        window: with a previous mask, only a window around the newest click is re-cut; its half-size is
            ``window`` times the click's distance to the previous mask's same-label region (0: re-cut all).
        min_window: smallest window half-size, in working pixels.
    """

    name = "graphcut"

    def __init__(
        self,
        side: int = 160,
        gamma: float = 50.0,
        bins: int = 16,
        smooth: float = 1.0,
        iterations: int = 2,
        radius: int = 2,
        init_frac: float = 0.12,
        guide_radius: int = 4,
        guide_eps: float = 1e-3,
        window: float = 6.0,
        min_window: int = 8,
    ):
        if side < 16:
            raise ValueError(f"side must be at least 16 pixels, got {side}")
        if not 2 <= bins <= 64:
            raise ValueError(f"bins must lie in [2, 64], got {bins}")
        self.side, self.gamma, self.bins, self.smooth = side, gamma, bins, smooth
        self.iterations, self.radius, self.init_frac = max(1, iterations), radius, init_frac
        self.guide_radius, self.guide_eps = guide_radius, guide_eps
        self.window, self.min_window = window, min_window
        self._cut: GridCut | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Precompute the working grid, colour bins, edge weights and min-cut graph (uint8 HxWx3 RGB in)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
        h, w = self.shape = image.shape[:2]
        self.scale = min(1.0, self.side / max(h, w))
        sh, sw = self.small_shape = (max(2, round(h * self.scale)), max(2, round(w * self.scale)))
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA) if self.scale < 1 else image
        q = small.astype(np.int32) * self.bins // 256
        self._bin = (q[..., 0] * self.bins + q[..., 1]) * self.bins + q[..., 2]
        f = small.astype(np.float32)
        dx = np.zeros((sh, sw), np.float32)
        dy = np.zeros((sh, sw), np.float32)
        dx[:, :-1] = ((f[:, 1:] - f[:, :-1]) ** 2).sum(-1)
        dy[:-1] = ((f[1:] - f[:-1]) ** 2).sum(-1)
        mean_sq = (dx[:, :-1].sum() + dy[:-1].sum()) / max(1, dx[:, :-1].size + dy[:-1].size)
        beta = 1.0 / (2.0 * mean_sq + 1e-6)
        self._wx, self._wy = self.gamma * np.exp(-beta * dx), self.gamma * np.exp(-beta * dy)
        self._cut = GridCut(self._wx, self._wy)
        self._guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0

    def predict(
        self, clicks: Sequence[Click], prev: Prediction | None = None, box: Sequence[int] | None = None
    ) -> Prediction:
        """Mask (bool HxW, full resolution) for all clicks so far.

        Args:
            clicks: every click so far (full-resolution pixels).
            prev: the previous prediction; its mask seeds the colour models. With no clicks and no box it is
                returned unchanged (mask-refinement start state).
            box: optional ``[x, y, w, h]`` box (full-resolution pixels) seeding a box start state.
        """
        if self._cut is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        h, w = self.shape
        has_prev = prev is not None and bool(prev.mask.any())
        if not clicks and box is None:
            return prev.copy() if prev is not None else Prediction(np.zeros((h, w), bool))
        if not any(c.positive for c in clicks) and not has_prev and box is None:
            return Prediction(np.zeros((h, w), bool))
        fg_seed, bg_seed = self._seeds(clicks)
        if box is not None and not has_prev:  # GrabCut's convention: outside the box is background
            bg_seed |= ~self._box_region(box) & ~fg_seed
        if has_prev and box is None and self.window > 0:
            return self._local_update(clicks, prev, fg_seed, bg_seed)
        model_fg = self._initial_model(clicks, prev if has_prev else None, box) | fg_seed
        fg = model_fg
        for _ in range(self.iterations):
            cost_fg, cost_bg = self._unaries(model_fg & ~bg_seed, ~model_fg & ~fg_seed)
            cost_fg[bg_seed] = INF_COST
            cost_bg[fg_seed] = INF_COST
            fg = self._keep_seeded(self._cut.solve(cost_fg, cost_bg), fg_seed)
            model_fg = fg | fg_seed
        return Prediction(self._upsample(fg))

    def _local_update(
        self, clicks: Sequence[Click], prev: Prediction, fg_seed: np.ndarray, bg_seed: np.ndarray
    ) -> Prediction:
        """Re-cut only a window around the newest click, the rest of the previous mask fixed.

        The robot user clicks the middle of the largest error region, which reaches about as far from the
        click as the nearest previous-mask pixel already carrying the click's label (distance ``d``); the
        window's half-size is ``window * d`` (at least ``min_window`` working pixels). Its border ring is
        held at the previous labels; colour models come from the whole previous mask.
        """
        sh, sw = self.small_shape
        prev_small = self._initial_model(clicks, prev, None)
        last = clicks[-1]
        x, y = self._small_xy(last)
        same = prev_small if last.positive else ~prev_small
        d = max(sh, sw)
        if same.any():
            d = cv2.distanceTransform((~same).astype(np.uint8), cv2.DIST_L2, 3)[y, x]
        half = int(max(self.min_window, self.window * d))
        y0, y1, x0, x1 = max(0, y - half), min(sh, y + half + 1), max(0, x - half), min(sw, x + half + 1)
        win = (slice(y0, y1), slice(x0, x1))
        model_fg = prev_small | fg_seed
        cost_fg, cost_bg = self._unaries(model_fg & ~bg_seed, ~model_fg & ~fg_seed, win)
        cost_fg[bg_seed[win]] = INF_COST
        cost_bg[fg_seed[win]] = INF_COST
        ring = np.zeros(cost_fg.shape, bool)
        ring[0, :], ring[-1, :] = y0 > 0, y1 < sh
        ring[:, 0] |= x0 > 0
        ring[:, -1] |= x1 < sw
        cost_fg[ring & ~prev_small[win]] = INF_COST
        cost_bg[ring & prev_small[win]] = INF_COST
        fg = prev_small.copy()
        fg[win] = GridCut(self._wx[win], self._wy[win]).solve(cost_fg, cost_bg)
        fg = self._keep_seeded(fg, fg_seed)
        changed = fg != prev_small
        if not changed.any():
            return Prediction(prev.mask.copy())
        ys, xs = np.nonzero(cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)))
        return Prediction(self._upsample(fg, prev.mask, (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)))

    def _small_xy(self, c: Click) -> tuple[int, int]:
        sh, sw = self.small_shape
        return min(sw - 1, int(c.x * self.scale)), min(sh - 1, int(c.y * self.scale))

    def _seeds(self, clicks: Sequence[Click]) -> tuple[np.ndarray, np.ndarray]:
        fg = np.zeros(self.small_shape, np.uint8)
        bg = np.zeros(self.small_shape, np.uint8)
        for c in clicks:  # later clicks override earlier ones where discs overlap
            cv2.circle(fg, self._small_xy(c), self.radius, int(c.positive), -1)
            cv2.circle(bg, self._small_xy(c), self.radius, int(not c.positive), -1)
        return fg.astype(bool), bg.astype(bool)

    def _initial_model(
        self, clicks: Sequence[Click], prev: Prediction | None, box: Sequence[int] | None
    ) -> np.ndarray:
        """Bool working-grid region that the first foreground colour model is learnt from."""
        sh, sw = self.small_shape
        if prev is not None:
            return cv2.resize(prev.mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
        if box is not None:
            return self._box_region(box)
        region = np.zeros((sh, sw), np.uint8)
        r0 = max(self.radius + 1, int(round(self.init_frac * max(sh, sw))))
        for c in clicks:
            if c.positive:
                cv2.circle(region, self._small_xy(c), r0, 1, -1)
        return region.astype(bool)

    def _box_region(self, box: Sequence[int]) -> np.ndarray:
        x, y, bw, bh = (int(round(v * self.scale)) for v in box)
        region = np.zeros(self.small_shape, bool)
        region[max(0, y) : y + max(1, bh), max(0, x) : x + max(1, bw)] = True
        return region

    def _unaries(
        self, fg_region: np.ndarray, bg_region: np.ndarray, win: tuple[slice, slice] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``-log`` colour likelihoods (float, working grid or its window ``win``) under the histograms of the
        two regions."""
        nb = self.bins**3

        def neg_log_hist(region: np.ndarray) -> np.ndarray:
            hist = np.bincount(self._bin[region], minlength=nb).astype(np.float64)
            if self.smooth > 0:
                hist = gaussian_filter(hist.reshape((self.bins,) * 3), self.smooth, mode="constant").ravel()
            hist += 1e-3 * max(hist.sum(), 1.0) / nb  # a floor for colours never seen
            return -np.log(hist / hist.sum())

        bins = self._bin if win is None else self._bin[win]
        return neg_log_hist(fg_region)[bins], neg_log_hist(bg_region)[bins]

    def _keep_seeded(self, fg: np.ndarray, fg_seed: np.ndarray) -> np.ndarray:
        if not fg_seed.any():
            return fg
        n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=4)
        keep = np.zeros(n, bool)
        keep[labels[fg_seed & fg]] = True
        keep[0] = False
        return keep[labels]

    def _upsample(
        self, fg: np.ndarray, base: np.ndarray | None = None, box: tuple[int, int, int, int] | None = None
    ) -> np.ndarray:
        """Full-resolution bool mask from the working-grid ``fg``; with ``base`` (bool HxW) and a working-grid
        ``box`` (y0, y1, x0, x1), only that box is recomputed and the rest is copied from ``base``."""
        h, w = self.shape
        soft = fg.astype(np.float32)
        if self.scale < 1:
            soft = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
        if base is None or box is None:
            y0, y1, x0, x1 = 0, h, 0, w
        else:
            y0, y1, x0, x1 = (int(v / self.scale) for v in box)
            y0, x0, y1, x1 = max(0, y0 - 1), max(0, x0 - 1), min(h, y1 + 1), min(w, x1 + 1)
        m = 2 * self.guide_radius + 2  # margin so that the filter sees full windows inside the box
        Y0, Y1, X0, X1 = max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)
        crop = soft[Y0:Y1, X0:X1]
        if self.guide_radius > 0:
            crop = guided_filter(self._guide[Y0:Y1, X0:X1], crop, self.guide_radius, self.guide_eps)
        out = np.zeros((h, w), bool) if base is None else base.copy()
        out[y0:y1, x0:x1] = (crop > 0.5)[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0]
        return out

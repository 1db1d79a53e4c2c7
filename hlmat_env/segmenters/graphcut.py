"""The default weight-free segmenter: a click-seeded colour-histogram graph cut on a working grid that zooms in
on the object (a crop around the clicks and the previous mask, at up to full resolution), upsampled with an
edge-aware (guided) filter.

Registered as ``"default"`` and ``"graphcut"``. It uses only the image, the clicks so far and the previous
mask; it never sees the target. Deterministic (no random initialisation anywhere; the crop is a function of
the clicks and the previous mask alone).

Method (a GrabCut-style energy with few, principled parameters, not tuned image by image; what they were
chosen on is in docs/segmenters.md):

1. ``set_image``: the whole-image *view*: downscale so that the long side is at most ``side`` pixels
   (INTER_AREA); quantise colours into ``bins``^3 RGB bins; contrast-sensitive Potts weights
   ``gamma * exp(-beta |I_p - I_q|^2)`` with ``beta = 1 / (2 mean |I_p - I_q|^2)`` (Boykov-Jolly / GrabCut);
   the min-cut graph (:class:`GridCut`). Geodesic distances on the working grid use the edge length
   ``1 + |I_p - I_q| / mean |I_p - I_q|`` (one unit per pixel plus the colour change crossed, relative to the
   view's mean step), so a "geodesic disc" of radius ``r`` (distance <= ``2 r``) is a Euclidean disc of radius
   about ``r`` in a homogeneous region and stops at edges. A crop view is the same built on a crop of the
   image (:meth:`GraphCutSegmenter._focus_box`), its long side again at most ``side``: a small object is cut
   at full resolution instead of at half of it.
2. ``predict``: hard seeds are geodesic discs of ``radius`` working pixels around the clicks (later clicks
   override earlier ones). Colour histograms (smoothed, ``-log`` likelihood unaries) are learnt for the
   foreground from the previous mask plus the geodesic discs of ``init_frac`` of the view's long side around
   the positive clicks, minus those around the negative clicks, and for the background from the rest;
   without a previous mask, from a box or from the positive clicks' geodesic discs alone. Each histogram is
   a mixture: weight ``click_weight`` on the colours of its clicked discs alone (what the user confirmed;
   without negative clicks before any mask, a ``border`` band of the view stands in for them), the rest on
   its region. A geodesic click prior is added to the unaries: labelling a pixel against a click costs
   ``geo_weight * exp(-D / s)``, with ``D`` its geodesic distance to that click and ``s = geo_scale`` times the
   colour-model disc's diameter (Bai and Sapiro's geodesic segmentation as a soft term): a click also claims
   what is connected to it without crossing edges, not only what has its colours, so a large object
   whose colours also occur in the background still grows from its clicks, and a large wrong region
   shrinks from a negative click placed in it. ``iterations`` rounds of cut + re-learning (GrabCut's EM).
3. The first click (no previous mask) is cut under several object-size hypotheses: crops reaching
   ``first_sizes`` pixels beyond the clicks (their border band says "the object ends before here") and the
   whole image (then cut again on the crop around its result). The mask kept is the one whose boundary
   follows the image's edges best and whose deepest point is nearest the clicks
   (:meth:`GraphCutSegmenter._first_score`: a first click goes near an object's middle).
4. Only foreground components that hold a positive click are kept (the object is connected to its clicks).
5. With a previous mask, the view is the crop around the previous mask and the clicks (expanded by
   ``zoom_expand`` of its size; the whole image when that crop would be nearly as large) and steps 2-4
   re-cut only a window around the newest click (the rest of the mask is kept; see
   :meth:`GraphCutSegmenter._local_update`).
6. The working-resolution mask is upsampled and refined with a guided filter on the full-resolution grey
   image (only inside the changed box after a local re-cut); the hard seeds are then written into it, so a
   click always changes at least its own seed region (a click is never a no-op).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from hlmat_env.actions import Click
from hlmat_env.segmenters.base import Prediction
from hlmat_env.segmenters.gridcut import INF_COST, GridCut, resolve_backend


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
        gamma: weight of the contrast-sensitive smoothness term (GrabCut's 50 with its sharper GMM unaries;
            30 with these finer histograms).
        bins: colour histogram bins per RGB channel.
        smooth: Gaussian smoothing of the histograms, in bins.
        iterations: rounds of min cut + colour-model re-learning of a cut without a previous mask.
        radius: hard-seed geodesic disc radius around each click, in working pixels.
        init_frac: colour-model geodesic disc radius around the clicks, as a fraction of the working long
            side.
        guide_radius: guided-filter window radius in full-resolution pixels (0: plain bilinear upsampling).
        guide_eps: guided-filter regulariser (grey levels in [0, 1]).
        window: with a previous mask, only a window around the newest click is re-cut; its half-size is
            ``window`` times the click's distance to the previous mask's same-label region (0: re-cut all).
        min_window: smallest window half-size, in working pixels.
        click_weight: share of each colour model learnt from its clicked geodesic discs alone (0: none).
        geo_weight: weight of the geodesic click prior (cost units of the ``-log`` colour likelihoods; 0: none).
        geo_scale: its decay length, as a fraction of the colour-model disc's geodesic diameter.
        local_iterations: rounds of cut + re-learning of a local re-cut (with a previous mask); the
            colour models start from the previous mask there, so one round does most of the work.
        border: width of the view-border band, as a fraction of the working long side, that the first
            cut's background model treats as clicked (0: none).
        zoom_max: largest crop view, as a fraction of the image's long side; a larger crop means the whole
            image (0: never zoom in).
        zoom_expand: margin of a crop view on each side of the previous mask and the clicks, as a fraction of
            their box's size.
        zoom_min: smallest crop side in full-resolution pixels.
        first_sizes: object-size hypotheses of the first cut: crops reaching this many full-resolution pixels
            beyond the clicks on each side (the whole image is always a hypothesis too).
        maxflow: min-cut backend, ``"scipy"``, ``"pymaxflow"`` (optional, GPL-3, several times faster) or
            ``"auto"`` (PyMaxflow when installed). Masks are identical with either (:mod:`.gridcut`).
    """

    name = "graphcut"

    def __init__(
        self,
        side: int = 320,
        gamma: float = 30.0,
        bins: int = 32,
        smooth: float = 1.0,
        iterations: int = 2,
        radius: int = 3,
        init_frac: float = 0.12,
        guide_radius: int = 4,
        guide_eps: float = 1e-3,
        window: float = 6.0,
        min_window: int = 8,
        click_weight: float = 0.5,
        border: float = 0.1,
        zoom_max: float = 0.7,
        zoom_expand: float = 0.4,
        zoom_min: int = 64,
        first_sizes: Sequence[int] = (100,),
        maxflow: str = "auto",
        geo_weight: float = 3.0,
        geo_scale: float = 0.5,
        local_iterations: int = 1,
    ):
        if side < 16:
            raise ValueError(f"side must be at least 16 pixels, got {side}")
        if not 2 <= bins <= 64:
            raise ValueError(f"bins must lie in [2, 64], got {bins}")
        if not 0 <= click_weight < 1:
            raise ValueError(f"click_weight must lie in [0, 1), got {click_weight}")
        self.side, self.gamma, self.bins, self.smooth = side, gamma, bins, smooth
        self.iterations, self.radius, self.init_frac = max(1, iterations), radius, init_frac
        self.guide_radius, self.guide_eps = guide_radius, guide_eps
        self.window, self.min_window = window, min_window
        self.click_weight, self.border = click_weight, border
        self.geo_weight, self.geo_scale, self.local_iterations = geo_weight, geo_scale, max(1, local_iterations)
        self.zoom_max, self.zoom_expand, self.zoom_min = zoom_max, zoom_expand, zoom_min
        self.first_sizes = tuple(int(v) for v in first_sizes)
        self.min_cut_backend = resolve_backend(maxflow)  # "scipy" or "pymaxflow": the same masks either way
        self._cut: GridCut | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Precompute the whole-image working grid, colour bins, edge weights and min-cut graph (uint8 HxWx3
        RGB in); crop views (zoom-in) are built on demand by :meth:`predict`."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
        h, w = self.shape = image.shape[:2]
        if h < 1 or w < 1:
            raise ValueError(f"image must have at least one pixel, got shape {image.shape}")
        self._image = image
        self._guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        grad = np.zeros(self.shape, np.float32)
        for ch in cv2.split(image.astype(np.float32)):  # colour Sobel magnitude, relative to its mean
            grad += cv2.Sobel(ch, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(ch, cv2.CV_32F, 0, 1) ** 2
        grad = np.sqrt(grad)
        self._edges = 1.0 - np.exp(-grad / (grad.mean() + 1e-6))
        self._views: dict[tuple[int, int, int, int], dict] = {}
        self._full_box = (0, h, 0, w)
        self._use_view(self._full_box)

    def _use_view(self, box: tuple[int, int, int, int]) -> None:
        """Make the working grid the full-resolution crop ``box`` (y0, y1, x0, x1), downscaled so that its
        long side is at most ``side`` pixels (built on demand; the whole image's and the latest crop's kept)."""
        if box not in self._views:
            for key in [k for k in self._views if k != self._full_box]:
                del self._views[key]
            self._views[box] = self._build_view(box)
        self.__dict__.update(self._views[box])

    def _build_view(self, box: tuple[int, int, int, int]) -> dict:
        y0, y1, x0, x1 = box
        crop = self._image[y0:y1, x0:x1]
        h, w = crop.shape[:2]
        scale = min(1.0, self.side / max(h, w))
        if scale < 1:  # a long thin image keeps at least two working pixels across
            sh, sw = (max(2, round(h * scale)), max(2, round(w * scale)))
            small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
        else:  # crops up to ``side`` are used as they are, down to 1x1
            sh, sw = (h, w)
            small = crop
        q = small.astype(np.int32) * self.bins // 256
        f = small.astype(np.float32)
        dx = np.zeros((sh, sw), np.float32)
        dy = np.zeros((sh, sw), np.float32)
        dx[:, :-1] = ((f[:, 1:] - f[:, :-1]) ** 2).sum(-1)
        dy[:-1] = ((f[1:] - f[:-1]) ** 2).sum(-1)
        mean_sq = (dx[:, :-1].sum() + dy[:-1].sum()) / max(1, dx[:, :-1].size + dy[:-1].size)
        beta = 1.0 / (2.0 * mean_sq + 1e-6)
        wx, wy = self.gamma * np.exp(-beta * dx), self.gamma * np.exp(-beta * dy)
        step = np.sqrt(np.concatenate([dx[:, :-1].ravel(), dy[:-1].ravel()]))
        length = 1.0 + step / ((step.mean() if step.size else 0.0) + 1e-6)  # a 1x1 grid has no edge
        idx = np.arange(sh * sw).reshape(sh, sw)
        a = np.concatenate([idx[:, :-1].ravel(), idx[:-1].ravel()])
        b = np.concatenate([idx[:, 1:].ravel(), idx[1:].ravel()])
        geo = csr_matrix((np.concatenate([length, length]),
                          (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(sh * sw,) * 2)
        return {"view_box": box, "scale": scale, "small_shape": (sh, sw),
                "_bin": (q[..., 0] * self.bins + q[..., 1]) * self.bins + q[..., 2], "_wx": wx, "_wy": wy,
                "_cut": GridCut(wx, wy, backend=self.min_cut_backend), "_geo_graph": geo, "_geo_cache": {}}

    def _focus_box(self, mask_box: tuple[int, int, int, int] | None, clicks: Sequence[Click],
                   half: int = 0) -> tuple[int, int, int, int]:
        """The zoom-in crop (full-resolution y0, y1, x0, x1) around a mask's box and the clicks: expanded by
        ``zoom_expand`` of its size on each side (at least ``zoom_min`` pixels across, at least ``half`` on
        each side) and snapped outwards to a lattice of about an eighth of its size; the whole image when
        that crop's long side would exceed ``zoom_max`` of the image's."""
        h, w = self.shape
        ys = [c.y for c in clicks]
        xs = [c.x for c in clicks]
        if mask_box is not None:
            ys += [mask_box[0], mask_box[1] - 1]
            xs += [mask_box[2], mask_box[3] - 1]
        if self.zoom_max <= 0 or not ys:
            return self._full_box
        by0, by1, bx0, bx1 = min(ys), max(ys) + 1, min(xs), max(xs) + 1
        py = max(self.zoom_expand * (by1 - by0), (self.zoom_min - (by1 - by0)) / 2, half)
        px = max(self.zoom_expand * (bx1 - bx0), (self.zoom_min - (bx1 - bx0)) / 2, half)
        step = 16  # a lattice of about an eighth of the crop: small changes of the mask keep their crop
        while 8 * step < max(by1 - by0 + 2 * py, bx1 - bx0 + 2 * px):
            step *= 2
        y0, y1 = max(0, int(by0 - py) // step * step), min(h, -(-int(by1 + py) // step) * step)
        x0, x1 = max(0, int(bx0 - px) // step * step), min(w, -(-int(bx1 + px) // step) * step)
        if max(y1 - y0, x1 - x0) > self.zoom_max * max(h, w):
            return self._full_box
        return (y0, y1, x0, x1)

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
        if box is not None:
            self._use_view(self._full_box)
        elif has_prev:
            self._use_view(self._focus_box(_mask_box(prev.mask), clicks))
        else:
            return self._first_cut(clicks)
        fg_seed, bg_seed = self._seeds(clicks)
        if box is not None and not has_prev:  # GrabCut's convention: outside the box is background
            bg_seed |= ~self._box_region(box) & ~fg_seed
        if has_prev and box is None and self.window > 0:
            return self._local_update(clicks, prev, fg_seed, bg_seed)
        fg = self._cut_all(clicks, prev if has_prev else None, box)
        base = prev.mask if has_prev and box is None else None
        out = self._upsample(fg, base, (0, fg.shape[0], 0, fg.shape[1]) if base is not None else None)
        return Prediction(self._write_seeds(out, fg_seed, bg_seed))

    def _first_cut(self, clicks: Sequence[Click]) -> Prediction:
        """The first cut (no previous mask): one cut per object-size hypothesis (a crop of ``first_sizes``
        full-resolution pixels on each side of the clicks, and the whole image), the one whose boundary
        best follows image edges and whose deepest point is nearest the clicks kept (:meth:`_first_score`);
        a whole-image winner is cut again on the crop around it (zoom-in)."""
        best: tuple[float, Prediction] | None = None
        views = [self._focus_box(None, clicks, half) for half in self.first_sizes] + [self._full_box]
        for view in dict.fromkeys(views):  # in order, without repeats
            self._use_view(view)
            fg = self._cut_all(clicks, None, None)
            if view == self._full_box:
                fbox = None
                if fg.any():
                    ys, xs = np.nonzero(fg)
                    fbox = self._to_full((ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
                zoom = self._focus_box(fbox, clicks)
                if zoom != self._full_box and zoom not in views:
                    self._use_view(zoom)
                    fg = self._cut_all(clicks, None, None)
            fg_seed, bg_seed = self._seeds(clicks)
            pred = Prediction(self._write_seeds(self._upsample(fg), fg_seed, bg_seed))
            score = self._first_score(pred.mask, clicks)
            if best is None or score > best[0]:
                best = (score, pred)
        return best[1]

    def _first_score(self, mask: np.ndarray, clicks: Sequence[Click]) -> float:
        """How plausible a first mask (bool HxW) is: the mean edge strength along its boundary (0 where it
        is cut by its crop) times how deep the positive clicks lie in it relative to its deepest point (a
        first click is put near an object's middle)."""
        if not mask.any():
            return -1.0
        m8 = mask.astype(np.uint8)
        boundary = mask & ~cv2.erode(m8, np.ones((3, 3), np.uint8), borderValue=1).astype(bool)
        strength = self._edges[boundary]
        y0, y1, x0, x1 = self.view_box
        h, w = self.shape
        cut = np.zeros_like(mask)
        if y0 > 0:
            cut[y0, x0:x1] = True
        if y1 < h:
            cut[y1 - 1, x0:x1] = True
        if x0 > 0:
            cut[y0:y1, x0] = True
        if x1 < w:
            cut[y0:y1, x1 - 1] = True
        edge = float(np.where(cut[boundary], 0.0, strength).mean()) if strength.size else 0.0
        dt = cv2.distanceTransform(np.pad(m8, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        depth = np.mean([dt[min(h - 1, c.y), min(w - 1, c.x)] for c in clicks if c.positive])
        return edge * float(depth / max(dt.max(), 1e-6))

    def _cut_all(self, clicks: Sequence[Click], prev: Prediction | None, box: Sequence[int] | None) -> np.ndarray:
        """Steps 2-3 on the whole current working grid (bool working-grid foreground)."""
        has_prev = prev is not None
        fg_seed, bg_seed = self._seeds(clicks)
        if box is not None and not has_prev:  # GrabCut's convention: outside the box is background
            bg_seed |= ~self._box_region(box) & ~fg_seed
        model_fg = self._initial_model(clicks, prev, box) | fg_seed
        fg = model_fg
        pos_region, neg_region = self._regions(clicks, self._model_radius())
        if self.border > 0 and not has_prev and box is None:  # the image border as background evidence
            sh, sw = self.small_shape
            b = max(1, int(self.border * max(sh, sw)))
            band = np.ones((sh, sw), bool)
            band[b:-b, b:-b] = False
            neg_region |= band & ~pos_region
        for _ in range(self.iterations):
            cost_fg, cost_bg = self._unaries(model_fg & ~bg_seed, ~model_fg & ~fg_seed, None,
                                             pos_region, neg_region)
            self._add_click_prior(clicks, cost_fg, cost_bg)
            cost_fg[bg_seed] = INF_COST
            cost_bg[fg_seed] = INF_COST
            fg = self._keep_seeded(self._cut.solve(cost_fg, cost_bg), fg_seed)
            model_fg = fg | fg_seed
        return fg

    def _local_update(
        self, clicks: Sequence[Click], prev: Prediction, fg_seed: np.ndarray, bg_seed: np.ndarray
    ) -> Prediction:
        """Re-cut only a window around the newest click, the rest of the previous mask fixed.

        The robot user clicks the middle of the largest error region, which reaches about as far from the
        click as the nearest previous-mask pixel already carrying the click's label (distance ``d``); the
        window's half-size is ``window * d`` (at least ``min_window`` working pixels). Its border ring is
        held at the previous labels; colour models come from the whole previous mask, then from each new cut
        (``local_iterations`` rounds). A positive click only adds foreground, a negative click only removes it.
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
        pos_region, neg_region = self._regions(clicks, self._model_radius())
        # The foreground model is the previous mask with the hard seeds applied: removing the larger colour-
        # model disc of a negative click from it would also drop nearby thin object parts (a ring around a
        # clicked hole) from the foreground colours.
        model_fg = (prev_small | fg_seed) & ~bg_seed
        ring = np.zeros((y1 - y0, x1 - x0), bool)
        # The window's border is held at the previous labels except where it is the image's own border.
        vy0, vy1, vx0, vx1 = self.view_box
        ring[0, :], ring[-1, :] = y0 > 0 or vy0 > 0, y1 < sh or vy1 < self.shape[0]
        ring[:, 0] |= x0 > 0 or vx0 > 0
        ring[:, -1] |= x1 < sw or vx1 < self.shape[1]
        cut = GridCut(self._wx[win], self._wy[win], backend=self.min_cut_backend)
        for _ in range(self.local_iterations):  # GrabCut's EM as in the full cut: colours re-learnt from each cut
            cost_fg, cost_bg = self._unaries(model_fg & ~bg_seed, ~model_fg & ~fg_seed, win,
                                             pos_region, neg_region)
            self._add_click_prior(clicks, cost_fg, cost_bg, win)
            cost_fg[bg_seed[win]] = INF_COST
            cost_bg[fg_seed[win]] = INF_COST
            cost_fg[ring & ~prev_small[win]] = INF_COST
            cost_bg[ring & prev_small[win]] = INF_COST
            fg = prev_small.copy()
            fg[win] = cut.solve(cost_fg, cost_bg)
            # A positive click says "this is missing": it only adds; a negative one "this is extra": it only
            # removes (else a re-cut window may grow the mask elsewhere while carving the click's region).
            fg = fg | prev_small if last.positive else fg & prev_small
            fg = self._keep_seeded(fg, fg_seed)
            model_fg = (fg | fg_seed) & ~bg_seed
        changed = fg != prev_small
        if not changed.any():
            return Prediction(self._write_seeds(prev.mask.copy(), fg_seed, bg_seed))
        ys, xs = np.nonzero(cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)))
        out = self._upsample(fg, prev.mask, (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
        return Prediction(self._write_seeds(out, fg_seed, bg_seed))

    def _add_click_prior(self, clicks: Sequence[Click], cost_fg: np.ndarray, cost_bg: np.ndarray,
                         win: tuple[slice, slice] | None = None) -> None:
        """Add the geodesic click prior to the unaries in place (working grid, or its window ``win``): labelling
        a pixel against a click costs ``geo_weight * exp(-D / s)`` (``D``: geodesic distance to the click, inf
        beyond the largest disc computed, where the prior is about ``exp(-1 / geo_scale)`` of its peak)."""
        if self.geo_weight <= 0:
            return
        decay = self.geo_scale * 2.0 * self._model_radius()
        for c in clicks:
            dist = self._geodesic(c) if win is None else self._geodesic(c)[win]
            pull = self.geo_weight * np.exp(-dist / decay)
            if c.positive:
                cost_bg += pull
            else:
                cost_fg += pull

    def _small_xy(self, c: Click) -> tuple[int, int]:
        sh, sw = self.small_shape
        y0, _, x0, _ = self.view_box
        return (min(sw - 1, max(0, int((c.x - x0) * self.scale))),
                min(sh - 1, max(0, int((c.y - y0) * self.scale))))

    def _to_full(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A working-grid box (y0, y1, x0, x1) in full-resolution pixels of the image (clipped to the view)."""
        vy0, vy1, vx0, vx1 = self.view_box
        y0, y1, x0, x1 = (int(v / self.scale) for v in box)
        return vy0 + max(0, y0), min(vy1, vy0 + y1), vx0 + max(0, x0), min(vx1, vx0 + x1)

    def _model_radius(self) -> float:
        return self.init_frac * max(self.small_shape)

    def _geodesic(self, c: Click) -> np.ndarray:
        """Float working-grid geodesic distance from the click's cell (inf beyond the largest disc used)."""
        xy = self._small_xy(c)
        if xy not in self._geo_cache:
            sh, sw = self.small_shape
            limit = 2.0 * max(self._model_radius(), self.radius)
            dist = dijkstra(self._geo_graph, indices=xy[1] * sw + xy[0], limit=limit)
            self._geo_cache[xy] = dist.reshape(sh, sw)
        return self._geo_cache[xy]

    def _regions(self, clicks: Sequence[Click], radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Bool working-grid unions of the geodesic discs of ``radius`` around the positive and the negative
        clicks (later clicks override earlier ones where discs overlap)."""
        fg = np.zeros(self.small_shape, bool)
        bg = np.zeros(self.small_shape, bool)
        for c in clicks:
            disc = self._geodesic(c) <= 2.0 * radius
            fg[disc], bg[disc] = c.positive, not c.positive
        return fg, bg

    def _seeds(self, clicks: Sequence[Click]) -> tuple[np.ndarray, np.ndarray]:
        return self._regions(clicks, self.radius)

    def _write_seeds(self, mask: np.ndarray, fg_seed: np.ndarray, bg_seed: np.ndarray) -> np.ndarray:
        """``mask`` (bool HxW) with the working-grid hard seeds written in at full resolution."""
        y0, y1, x0, x1 = self.view_box
        label = fg_seed.astype(np.uint8) + 2 * bg_seed.astype(np.uint8)
        if self.scale < 1:
            label = cv2.resize(label, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        view = mask[y0:y1, x0:x1]
        view[label == 1] = True
        view[label == 2] = False
        return mask

    def _initial_model(
        self, clicks: Sequence[Click], prev: Prediction | None, box: Sequence[int] | None
    ) -> np.ndarray:
        """Bool working-grid region that the first foreground colour model is learnt from."""
        sh, sw = self.small_shape
        if prev is not None:
            y0, y1, x0, x1 = self.view_box
            crop = prev.mask[y0:y1, x0:x1].astype(np.uint8)
            return cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA) > 0
        if box is not None:
            return self._box_region(box)
        return self._regions(clicks, self._model_radius())[0]

    def _box_region(self, box: Sequence[int]) -> np.ndarray:
        x, y, bw, bh = box
        x, y = x - self.view_box[2], y - self.view_box[0]
        x, y, bw, bh = (int(round(v * self.scale)) for v in (x, y, bw, bh))
        region = np.zeros(self.small_shape, bool)
        region[max(0, y) : y + max(1, bh), max(0, x) : x + max(1, bw)] = True
        return region

    def _unaries(
        self,
        fg_region: np.ndarray,
        bg_region: np.ndarray,
        win: tuple[slice, slice] | None = None,
        fg_clicked: np.ndarray | None = None,
        bg_clicked: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``-log`` colour likelihoods (float, working grid or its window ``win``) under the histograms of the
        two regions, each mixed with weight ``click_weight`` with the histogram of its clicked region (bool
        working grid; ignored when empty)."""
        nb = self.bins**3

        def neg_log_hist(region: np.ndarray, clicked: np.ndarray | None) -> np.ndarray:
            hist = np.bincount(self._bin[region], minlength=nb).astype(np.float64)
            if self.click_weight > 0 and clicked is not None and clicked.any():
                total = max(hist.sum(), 1.0)
                extra = np.bincount(self._bin[clicked], minlength=nb).astype(np.float64)
                hist = (1 - self.click_weight) * hist + self.click_weight * total * extra / extra.sum()
            if self.smooth > 0:
                hist = gaussian_filter(hist.reshape((self.bins,) * 3), self.smooth, mode="constant").ravel()
            hist += 1e-3 * max(hist.sum(), 1.0) / nb  # a floor for colours never seen
            return -np.log(hist / hist.sum())

        bins = self._bin if win is None else self._bin[win]
        return neg_log_hist(fg_region, fg_clicked)[bins], neg_log_hist(bg_region, bg_clicked)[bins]

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
        vy0, vy1, vx0, vx1 = self.view_box
        h, w = vy1 - vy0, vx1 - vx0
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
            crop = guided_filter(self._guide[vy0 + Y0 : vy0 + Y1, vx0 + X0 : vx0 + X1], crop,
                                 self.guide_radius, self.guide_eps)
        out = np.zeros(self.shape, bool) if base is None else base.copy()
        out[vy0 + y0 : vy0 + y1, vx0 + x0 : vx0 + x1] = (crop > 0.5)[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0]
        return out


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box (y0, y1, x0, x1) of a bool mask's pixels, None when it has none."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not rows.size:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

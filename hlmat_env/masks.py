"""Mask helpers: COCO RLE through pycocotools, boxes, resizing."""
from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE (``{"size": [h, w], "counts": str}``, JSON-ready) of a bool/0-1 HxW mask."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_rle(rle: dict) -> np.ndarray:
    """Bool HxW mask from a COCO RLE (compressed string/bytes counts or uncompressed list counts)."""
    if isinstance(rle.get("counts"), list):
        h, w = rle["size"]
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Bool HxW mask from COCO polygons ``[[x1, y1, x2, y2, ...], ...]``."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def bbox_xywh(mask: np.ndarray) -> list[int]:
    """Tight box ``[x, y, w, h]`` of a bool mask (zeros when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def box_mask(box_xywh: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Bool HxW mask filled inside ``[x, y, w, h]``."""
    x, y, w, h = box_xywh
    m = np.zeros(shape, dtype=bool)
    m[y : y + h, x : x + w] = True
    return m


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to ``size = (width, height)`` with nearest-neighbour sampling."""
    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def coverage_map(mask: np.ndarray, size: int) -> np.ndarray:
    """The covered fraction of each pixel of a ``size x size`` grid over a mask (bool/int HxW, >0 = covered;
    so ignore pixels, -1, count as uncovered): uint8 ``(size, size)``, 0-255 (area resampling). A soft,
    thin-part-preserving low-resolution view of a mask, e.g. a training label for predicted target maps."""
    m = (np.asarray(mask) > 0).astype(np.uint8) * 255
    if m.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {m.shape}")
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)


def degrade(target: np.ndarray, rng: np.random.Generator, strength: float | None = None) -> np.ndarray:
    """A plausible imperfect annotation of ``target`` (bool/int HxW, >0 = object): a random mix of
    erosion or dilation, a shift, and blobs added or cut near the boundary. Used for diverse start states and
    for training a process reward model. ``strength`` in [0, 1] (random when None) scales the damage.
    """
    gt = np.asarray(target) > 0
    h, w = gt.shape
    s = float(rng.uniform(0.1, 1.0)) if strength is None else float(strength)
    scale = max(1.0, np.sqrt(max(int(gt.sum()), 1)) / 4)
    k = max(1, int(round(s * scale * rng.uniform(0.3, 1.0))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    m = gt.astype(np.uint8)
    m = cv2.erode(m, kernel) if rng.random() < 0.5 else cv2.dilate(m, kernel)
    dx, dy = (int(v) for v in rng.integers(-int(s * scale) - 1, int(s * scale) + 2, 2))
    m = np.roll(np.roll(m, dy, axis=0), dx, axis=1)
    ys, xs = np.nonzero(cv2.Canny(gt.astype(np.uint8) * 255, 50, 150))
    for _ in range(int(rng.integers(0, 1 + int(4 * s)))):
        if len(xs) == 0:
            break
        i = int(rng.integers(len(xs)))
        r = int(rng.integers(1, max(2, int(scale * s)) + 1))
        cv2.circle(m, (int(xs[i]), int(ys[i])), r, int(rng.random() < 0.5), -1)
    return m.astype(bool)

"""Drawing: the green mask overlay that SegAgent's MLLM sees, click markers, and episode GIFs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from hlmat_env.actions import Click

OVERLAY_COLOUR = (0, 255, 0)
POSITIVE_COLOUR = (0, 200, 0)
NEGATIVE_COLOUR = (220, 0, 0)


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5,
                 colour: tuple[int, int, int] = OVERLAY_COLOUR) -> np.ndarray:
    """SegAgent's view: ``colour`` blended with ``alpha`` on mask pixels only.

    Args:
        image: uint8 HxWx3 RGB.
        mask: bool HxW (same H, W).
    Returns:
        A new uint8 HxWx3 RGB array.
    """
    out = image.copy()
    m = mask.astype(bool)
    blend = image[m].astype(np.float32) * (1 - alpha) + np.array(colour, np.float32) * alpha
    out[m] = np.round(blend).astype(np.uint8)
    return out


def draw_clicks(image: np.ndarray, clicks: Sequence[Click], radius: int | None = None) -> np.ndarray:
    """Draw clicks as filled discs with a white rim: positive green, negative red. Returns a new array."""
    out = np.ascontiguousarray(image.copy())
    r = radius or max(2, round(min(image.shape[:2]) / 80))
    for c in clicks:
        colour = POSITIVE_COLOUR if c.positive else NEGATIVE_COLOUR
        cv2.circle(out, (c.x, c.y), r + 1, (255, 255, 255), -1, lineType=cv2.LINE_AA)
        cv2.circle(out, (c.x, c.y), r, colour, -1, lineType=cv2.LINE_AA)
    return out


def render_state(image: np.ndarray, mask: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
    """Full-resolution frame: overlay plus click markers (what ``render_mode="rgb_array"`` returns)."""
    return draw_clicks(overlay_mask(image, mask), clicks)


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 2.0) -> Path:
    """Write uint8 HxWx3 frames as a looping GIF; returns the path."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    return path

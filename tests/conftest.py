"""Shared fixtures: one torch thread per process, the GrabCut folder, a simple test segmenter."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:  # torch is a dependency, but keep collection working if a test env lacks it
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parents[1]
GRABCUT = REPO.parent / "shared" / "data" / "grabcut"
COCO_MVAL = REPO.parent / "shared" / "data" / "coco_mval"


@pytest.fixture
def grabcut_dir() -> Path:
    """The real GrabCut benchmark folder (images/ + masks/), or skip when this checkout has none."""
    if not (GRABCUT / "images").is_dir():
        pytest.skip(f"GrabCut data not found at {GRABCUT} (it lives in shared/, beside the repository)")
    return GRABCUT


@pytest.fixture
def coco_mval_dir() -> Path:
    """The real COCO-MVal folder (images/ + masks/), or skip when this checkout has none."""
    if not (COCO_MVAL / "images").is_dir():
        pytest.skip(f"COCO-MVal data not found at {COCO_MVAL} (it lives in shared/, beside the repository)")
    return COCO_MVAL


class DiscSegmenter:
    """Test double (not shipped): positive clicks paint discs, negative clicks erase them; ignores the image."""

    name = "disc"

    def __init__(self, radius: int = 6):
        self.radius = radius
        self.images_set = 0

    def set_image(self, image):
        self.shape = image.shape[:2]
        self.images_set += 1

    def predict(self, clicks, prev=None, box=None):
        from hlmat_env.segmenters import Prediction

        yy, xx = np.mgrid[0 : self.shape[0], 0 : self.shape[1]]
        m = np.zeros(self.shape, bool)
        for c in clicks:
            disc = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= self.radius**2
            m = m | disc if c.positive else m & ~disc
        return Prediction(m)


@pytest.fixture
def disc_segmenter() -> DiscSegmenter:
    return DiscSegmenter()

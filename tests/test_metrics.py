"""Metric bookkeeping with values known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from hlmat_env.metrics import ciou, failed_at, giou, intersection_union, iou, iou_after, noc_at, summarize


def test_iou_excludes_ignore_and_handles_empty_union():
    target = np.array([[1, 1, -1], [0, 0, -1]], np.int8)
    pred = np.array([[1, 0, 1], [1, 0, 1]], bool)
    assert intersection_union(pred, target) == (1, 3)
    assert iou(pred, target) == pytest.approx(1 / 3)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), np.int8)) == 1.0


def test_noc_nof_and_miou():
    curve = [0.5, 0.8, 0.86, 0.91, 0.95]
    assert noc_at(curve, 0.85) == 3 and noc_at(curve, 0.90) == 4
    assert noc_at([0.1] * 20, 0.85) == 20 and failed_at([0.1] * 20, 0.85)
    assert noc_at(curve, 0.99, max_clicks=20) == 20
    assert iou_after(curve, 1) == 0.5 and iou_after(curve, 10) == 0.95  # keeps the last mask
    assert iou_after(curve, 0, initial=0.3) == 0.3
    s = summarize([curve, [0.9]], max_clicks=20, ks=(1, 5))
    assert s["noc85"] == pytest.approx((3 + 1) / 2) and s["noc90"] == pytest.approx((4 + 1) / 2)
    assert s["nof85"] == 0 and s["miou@1"] == pytest.approx(0.7) and s["miou@5"] == pytest.approx(0.925)


def test_ciou_and_giou():
    assert ciou([1, 3], [2, 4]) == pytest.approx(4 / 6)
    assert giou([0.5, 0.75]) == pytest.approx(0.625)
    assert ciou([0], [0]) == 1.0

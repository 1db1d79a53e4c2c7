"""Metrics of interactive segmentation, with the ignore label (-1) excluded everywhere.

Conventions (REFERENCE.md section 4): NoC@k is the 1-based index of the first click with IoU >= k, or the
click budget (20) if never reached; NoF@k counts instances that never reach k; mIoU@k is the mean IoU after
exactly k clicks; cIoU = total intersection / total union over a set; gIoU = mean of per-sample IoU.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def intersection_union(pred: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Intersection and union pixel counts of bool ``pred`` with ``target`` (1 object, 0 bg, -1 ignore)."""
    valid = target >= 0
    gt = target > 0
    pred = pred.astype(bool) & valid
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """IoU of bool ``pred`` with ``target``; 1.0 when both are empty (empty union)."""
    inter, union = intersection_union(pred, target)
    return 1.0 if union == 0 else inter / union


def noc_at(ious: Sequence[float], thr: float, max_clicks: int = 20) -> int:
    """Number of clicks to reach ``thr``: 1-based index of the first IoU >= thr in ``ious``
    (``ious[k-1]`` is the IoU after k clicks), or ``max_clicks`` if never reached within the budget."""
    for k, v in enumerate(ious[:max_clicks], start=1):
        if v >= thr:
            return k
    return max_clicks


def failed_at(ious: Sequence[float], thr: float, max_clicks: int = 20) -> bool:
    """True when the IoU never reaches ``thr`` within ``max_clicks`` clicks (counts towards NoF)."""
    return not any(v >= thr for v in ious[:max_clicks])


def iou_after(ious: Sequence[float], k: int, initial: float = 0.0) -> float:
    """IoU after exactly ``k`` clicks. An episode that stopped early keeps its last mask (the protocol);
    ``k = 0`` gives ``initial``."""
    if k <= 0 or not ious:
        return float(initial)
    return float(ious[min(k, len(ious)) - 1])


def summarize(
    curves: Sequence[Sequence[float]],
    max_clicks: int = 20,
    ks: Sequence[int] = (1, 3, 5, 7, 10, 20),
    initial: Sequence[float] | None = None,
) -> dict[str, float]:
    """NoC@85/90, NoF@85/90 and mIoU@k over per-sample IoU curves (``curve[k-1]`` = IoU after k clicks)."""
    n = len(curves)
    init = list(initial) if initial is not None else [0.0] * n
    out: dict[str, float] = {"n": float(n)}
    for thr, name in ((0.85, "85"), (0.90, "90")):
        out[f"noc{name}"] = float(np.mean([noc_at(c, thr, max_clicks) for c in curves])) if n else float("nan")
        out[f"nof{name}"] = float(sum(failed_at(c, thr, max_clicks) for c in curves))
    for k in ks:
        vals = [iou_after(c, k, i0) for c, i0 in zip(curves, init)]
        out[f"miou@{k}"] = float(np.mean(vals)) if n else float("nan")
    return out


def ciou(intersections: Sequence[int], unions: Sequence[int]) -> float:
    """Cumulative IoU: total intersection over total union (1.0 when the total union is empty)."""
    u = int(np.sum(unions))
    return 1.0 if u == 0 else float(np.sum(intersections)) / u


def giou(ious: Sequence[float]) -> float:
    """Mean of per-sample IoU."""
    return float(np.mean(ious)) if len(ious) else float("nan")

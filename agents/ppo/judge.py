"""The step judge: does a click improve the mask? A small CNN that sees the image, the mask before and after
the click, and the clicks, and predicts the probability that the click raised the IoU. Never the target.

Why: on photos without a description the shipped policy's refinement clicks lower the IoU as often as they
raise it (docs/models/ppo.md), so the policy's most valuable decision is *when to stop*. ``PPOAgent`` with a
judge (its settings' ``judge`` entry) looks ahead through the view as :class:`agents.prm.stop.PRMStop` does:
it applies each of its few most probable clicks from a snapshot, asks the judge about the mask that results,
restores the snapshot, and clicks the candidate the judge likes best, or finishes when the judge expects none
of them to help. The judge is trained on recorded transitions (:mod:`agents.ppo.judge_data`) with the env's
IoU change as the label.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hlmat_env.actions import Click

PLANES = 10  # RGB, before, after, added, removed, positive clicks, negative clicks, latest click
N_STATS = 6


def judge_input(image: np.ndarray, before: np.ndarray, after: np.ndarray, clicks: Sequence[Click],
                size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The judge's input for one step: ``(planes, stats)``.

    Args:
        image: uint8 ``(H, W, 3)``; before, after: bool ``(H, W)`` masks before and after the latest click.
        clicks: every click placed so far (pixel coordinates), the latest one last.
        size: side of the square planes.

    Returns:
        ``planes`` uint8 ``(10, size, size)`` (RGB, before, after, added, removed as area fractions 0-255,
        positive, negative and latest click maps) and ``stats`` float32 ``(6,)`` (mask areas before and after,
        added and removed area, the latest click's sign, the number of clicks / 20).
    """
    h, w = before.shape
    b, a = np.asarray(before, bool), np.asarray(after, bool)
    masks = [b, a, a & ~b, b & ~a]

    def small(m: np.ndarray) -> np.ndarray:
        return cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)

    planes = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1).astype(np.float32)
              / 255.0]
    planes.append(np.stack([small(m) for m in masks]))
    maps = np.zeros((3, size, size), np.float32)
    for i, c in enumerate(clicks):
        y, x = min(size - 1, c.y * size // h), min(size - 1, c.x * size // w)
        maps[0 if c.positive else 1, y, x] = 1.0
        if i == len(clicks) - 1:
            maps[2, max(0, y - 1):y + 2, max(0, x - 1):x + 2] = 1.0
    planes.append(maps)
    out = np.clip(np.concatenate(planes) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    n = float(h * w)
    last = clicks[-1] if clicks else None
    stats = np.array([b.sum() / n, a.sum() / n, masks[2].sum() / n, masks[3].sum() / n,
                      1.0 if last is None or last.positive else -1.0, len(clicks) / 20.0], np.float32)
    return out, stats


class StepJudge(nn.Module):
    """``(planes, stats) -> (logit, delta)``: the logit of "this click raised the IoU" and the predicted IoU
    change, from :func:`judge_input`'s arrays (planes as float in [0, 1], ``(N, 10, S, S)``; stats ``(N, 6)``).

    Args:
        width: channels of the first convolution (the later ones have 1.5x, 2x and 2.5x as many).
    """

    def __init__(self, width: int = 24):
        super().__init__()
        w = int(width)
        self.width = w
        c = [w, w * 3 // 2, w * 2, w * 5 // 2]
        self.body = nn.Sequential(
            nn.Conv2d(PLANES, c[0], 3, stride=2, padding=1), nn.ReLU(),   # S/2: a quarter of the cost
            nn.Conv2d(c[0], c[1], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[1], c[2], 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c[3], c[3], 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * c[3] + N_STATS, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, planes: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The improvement logit ``(N,)`` and the predicted IoU change ``(N,)``."""
        h = self.body(planes)
        out = self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3)), stats], 1))
        return out[:, 0], out[:, 1]

    @torch.no_grad()
    def prob(self, planes: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """Probabilities of improvement, float64 ``(N,)``, for uint8 planes ``(N, 10, S, S)`` and stats ``(N, 6)``."""
        self.eval()
        logit, _ = self(torch.as_tensor(planes).float() / 255.0, torch.as_tensor(stats).float())
        return torch.sigmoid(logit).double().numpy()


def save_judge(judge: StepJudge, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the judge's weights, width and ``meta`` (training settings, metrics) to ``path`` (a ``.pt``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"width": judge.width, "state": judge.state_dict(), "meta": meta or {}}, path)
    return path


def load_judge(path: str | Path) -> StepJudge:
    """The :class:`StepJudge` saved at ``path`` by :func:`save_judge` (on the CPU, in eval mode)."""
    from hlmat_env.errors import CheckpointError

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"step judge not found: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    judge = StepJudge(blob["width"])
    judge.load_state_dict(blob["state"])
    return judge.eval()


def judge_loss(judge: StepJudge, planes: torch.Tensor, stats: torch.Tensor, delta: torch.Tensor,
               margin: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy of "IoU change > ``margin``" plus the squared error of the change (x10)."""
    logit, pred = judge(planes, stats)
    return F.binary_cross_entropy_with_logits(logit, (delta > margin).float()) + 10.0 * F.mse_loss(pred, delta)

"""The learned process reward model (PRM): a small CNN value head that predicts a mask's IoU with the unseen
target from the image, the mask and the caption.

Inputs (:func:`prm_inputs`), all at a fixed ``size`` (64 by default):

* a **global view**: the whole image (RGB) and the mask (area-resampled, so thin parts stay visible), 4 channels;
* a **crop view**: the same 4 channels in a square around the mask's bounding box, ``crop_factor`` (2.0) times
  its longer side plus 8 px, so the network sees the boundary at a useful resolution whatever the object size;
* **scalars**: mask area fraction and crop side over image side;
* the **caption** as a hashed bag of words (:func:`caption_features`): lower-cased alphanumeric tokens, each
  counted in bucket ``crc32(token) % caption_dim``, L2-normalised. No vocabulary file, stable across processes.

Each view goes through its own 4-layer strided CNN (BatchNorm, ReLU, global average + max pooling); the pooled
features, scalars and caption feed an MLP whose sigmoid output is the IoU estimate in [0, 1].

Design choice: the PRM is a **standalone** value network, not the value head of the PPO actor-critic. The PPO
value estimates the *return to go* of a policy (it changes with the policy and the discount), while the PRM
estimates the IoU of the *current mask*, a policy-independent quantity; a separate network can be trained on
states from any source (demonstrations, degraded masks, other policies), reused with any agent (MLLM, BC, PPO)
and as an annotation-quality filter, and it keeps the policy's trunk free of the PRM's regression loss.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class PRMConfig:
    """Hyper-parameters that define a PRM network (saved with its weights)."""

    size: int = 64
    caption_dim: int = 64
    width: int = 16
    crop_factor: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


def caption_features(caption: str, dim: int) -> np.ndarray:
    """Hashed bag of words of ``caption``: float32 ``(dim,)``, L2-normalised (zeros for an empty caption)."""
    v = np.zeros(dim, np.float32)
    token = []
    for ch in str(caption).lower() + " ":
        if ch.isalnum():
            token.append(ch)
        elif token:
            v[zlib.crc32("".join(token).encode("utf-8")) % dim] += 1.0
            token = []
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def crop_box(mask: np.ndarray, factor: float) -> tuple[float, float, float]:
    """Square crop ``(cx, cy, side)`` in pixels around the bounding box of bool HxW ``mask`` (whole image
    when the mask is empty)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (w - 1) / 2, (h - 1) / 2, float(max(h, w))
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    side = factor * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) + 8
    return float(cx), float(cy), float(side)


def prm_inputs(image: np.ndarray, mask: np.ndarray, size: int = 64,
               crop_factor: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs of one state.

    Args:
        image: uint8 HxWx3 RGB.
        mask: bool HxW (the current mask, full resolution).
        size: side of both views.
        crop_factor: crop side over the mask's longer bounding-box side.

    Returns:
        ``views`` uint8 ``(2, 4, size, size)`` (view, channel RGB+mask, row, col) and ``scalars`` float32 ``(2,)``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} != image shape {image.shape[:2]}")
    h, w = mask.shape
    m = mask.astype(np.uint8) * 255
    g_img = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    g_msk = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    cx, cy, side = crop_box(mask.astype(bool), crop_factor)
    s = size / side
    affine = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    c_img = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    c_msk = cv2.warpAffine(m, affine, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    views = np.stack([np.concatenate([g_img, g_msk[..., None]], 2), np.concatenate([c_img, c_msk[..., None]], 2)])
    scalars = np.array([mask.mean(), side / max(h, w)], np.float32)
    return views.transpose(0, 3, 1, 2).copy(), scalars


def _trunk(width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 4
    for c_out in (width // 2, width, 2 * width, 2 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*layers)


class PRMNet(nn.Module):
    """Two-view CNN + caption MLP -> IoU estimate in [0, 1] (see the module docstring)."""

    def __init__(self, config: PRMConfig = PRMConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.global_trunk = _trunk(w)
        self.crop_trunk = _trunk(w)
        feat = 2 * (4 * w) + 2 + config.caption_dim  # (avg + max pool) x 2 views, scalars, caption
        self.head = nn.Sequential(nn.Linear(feat, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, views: torch.Tensor, scalars: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        """IoU estimates, float ``(B,)`` in [0, 1].

        Args:
            views: uint8 or float ``(B, 2, 4, S, S)`` from :func:`prm_inputs` (uint8 scale 0-255).
            scalars: float ``(B, 2)``.
            caption: float ``(B, caption_dim)`` from :func:`caption_features`.
        """
        x = views.float() / 127.5 - 1.0
        feats = []
        for trunk, v in ((self.global_trunk, x[:, 0]), (self.crop_trunk, x[:, 1])):
            f = trunk(v)
            feats += [f.mean(dim=(2, 3)), f.amax(dim=(2, 3))]
        z = torch.cat([*feats, scalars.float(), caption.float()], 1)
        return torch.sigmoid(self.head(z)).squeeze(1)

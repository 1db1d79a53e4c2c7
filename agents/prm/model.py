"""The learned process reward model (PRM): a caption-conditioned fully convolutional network that predicts
where the described target is, and an IoU estimate read off that prediction and the current mask.

Inputs, all at a fixed square ``size`` (64 by default, aspect not kept):

* the **image** (RGB, area-resampled) plus two coordinate channels (x, y in [-1, 1]), so positions and
  relations ("left of") can be read by convolutions;
* the **caption** (:func:`hlmat_env.captions.caption_features`): a hashed bag of words of its *head* (the words before the first
  relation phrase such as "left of", "above", "next to") and of its *tail* (the words after it), plus a one-hot
  of that relation (or "none": then the head is the whole caption). Each token goes to two buckets,
  ``crc32(token) % dim`` and ``crc32("#" + token) % dim``, so two words are confused only if both collide. No
  vocabulary file, stable across processes, and any free-form caption (RefCOCO, COCO class names) works;
* the **current mask** (area-resampled to a coverage fraction per pixel).

The **grounding trunk** (a small U-Net, every conv block modulated by FiLM from the caption embedding) sees
image and caption only, never the mask, and outputs a target map: per pixel the predicted fraction of the
pixel covered by the target. It is trained with BCE against the downsampled target (a training label only).
The **IoU head** compares that map ``p`` with the mask ``m``: the fuzzy IoU ``sum(min(p, m)) / sum(max(p, m))``
(which equals the true IoU, up to resampling, when ``p`` is the true coverage) plus a learned correction in
logit space from the **verifier**: a small caption-FiLMed CNN on a crop around the mask (image, mask and map,
resampled with ``torchvision.ops.roi_align`` so that every object is seen at the same scale) whose pooled
features, a few statistics of ``p`` and ``m`` and the crop's place in the image go into an MLP. The trunk
must *find* the target (hard: grounding); the verifier only checks the mask it is shown: do its colour, shape
and edges fit the words, does it cover the object it sits on. The output is in [0, 1].

Design choice: the PRM is a **standalone** value network, not the value head of the plain PPO actor-critic.
The PPO value estimates the *return to go* of a policy (it changes with the policy and the discount), while the
PRM estimates the IoU of the *current mask*, a policy-independent quantity; a separate network can be trained on
states from any source (demonstrations, degraded masks, other policies), reused with any agent (MLLM, BC, PPO)
and as an annotation-quality filter. Its target map is computed once per image and caption, so scoring many
candidate masks of one state (tree search) costs one trunk pass and one cheap verifier pass per mask. The
*grounded* PPO policy (:mod:`agents.ppo.grounded`) goes the other way: it shares a trained PRM's trunk (frozen)
and feeds the PRM's IoU estimate to its critic and finish logit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

from hlmat_env.captions import PHRASE_RELATIONS as RELATIONS
from hlmat_env.captions import caption_features

__all__ = ["RELATIONS", "PRMConfig", "PRMNet", "SceneCode", "caption_features", "fuzzy_iou", "mask_boxes",
           "resize_image"]


@dataclass(frozen=True)
class PRMConfig:
    """Hyper-parameters that define a PRM network (saved with its weights)."""

    size: int = 64
    caption_dim: int = 96
    width: int = 16
    embed: int = 128
    crop: int = 24
    verifier_width: int = 16

    def to_dict(self) -> dict:
        """The config as a plain dict (saved with checkpoints)."""
        return asdict(self)

    @property
    def caption_len(self) -> int:
        """Length of :func:`caption_features` vectors."""
        return 2 * self.caption_dim + len(RELATIONS) + 1


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 HxWx3 RGB -> uint8 ``(3, size, size)`` (area resampling)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1).copy()


def fuzzy_iou(p: torch.Tensor, m: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``sum(min(p, m)) / sum(max(p, m))`` over the last two dims of float maps in [0, 1]: ``(B,)``."""
    return torch.minimum(p, m).sum((-2, -1)) / (torch.maximum(p, m).sum((-2, -1)) + eps)


class _FiLMConv(nn.Module):
    """3x3 conv, BatchNorm without affine, FiLM (``(1 + gamma) * x + beta`` from the caption embedding), ReLU."""

    def __init__(self, c_in: int, c_out: int, embed: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(c_out, affine=False)
        self.film = nn.Linear(embed, 2 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(e)[:, :, None, None].chunk(2, 1)
        return torch.relu(self.norm(self.conv(x)) * (1 + gamma) + beta)


class SceneCode(NamedTuple):
    """What the trunk computes once per scene: target-map logits ``(B, S, S)``, caption embedding ``(B, E)``
    and the normalised image ``(B, 3, S, S)`` (the verifier's crops come from it)."""

    logits: torch.Tensor
    embed: torch.Tensor
    pixels: torch.Tensor

    def take(self, rows: torch.Tensor) -> "SceneCode":
        """The scenes at ``rows`` (one per state)."""
        return SceneCode(self.logits[rows], self.embed[rows], self.pixels[rows])


def mask_boxes(m: torch.Tensor, margin: float = 1.5, min_side: float = 6.0) -> torch.Tensor:
    """Square boxes ``(B, 4)`` (x1, y1, x2, y2 in pixels of the map) around each mask ``m`` ``(B, S, S)`` in
    [0, 1] (pixels above 0.25), ``margin`` times the larger side of its bounding box, at least ``min_side``;
    the whole map for an empty mask."""
    s = m.shape[-1]
    on = m > 0.25
    idx = torch.arange(s, dtype=torch.float32, device=m.device)
    rows, cols = on.any(2), on.any(1)
    big = torch.tensor(float(s), device=m.device)

    def extent(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.where(flags, idx, big).amin(1)
        hi = torch.where(flags, idx, -big).amax(1) + 1
        return lo, hi

    (y0, y1), (x0, x1) = extent(rows), extent(cols)
    empty = ~rows.any(1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = torch.clamp(torch.maximum(x1 - x0, y1 - y0) * margin, min=min_side) / 2
    boxes = torch.stack([cx - half, cy - half, cx + half, cy + half], 1)
    whole = torch.tensor([0.0, 0.0, float(s), float(s)], device=m.device)
    return torch.where(empty[:, None], whole, boxes)


class PRMNet(nn.Module):
    """Caption-conditioned U-Net target map + IoU head with a mask verifier (see the module docstring)."""

    def __init__(self, config: PRMConfig = PRMConfig()):
        super().__init__()
        self.config = config
        w, e = config.width, config.embed
        self.embed = nn.Sequential(nn.Linear(config.caption_len, e), nn.ReLU(), nn.Linear(e, e), nn.ReLU())
        h = max(4, w // 2)  # full resolution is the expensive level: half width there
        chans = [(5, h, 1), (h, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1),
                 (4 * w, 4 * w, 2), (4 * w, 4 * w, 1)]
        self.down = nn.ModuleList(_FiLMConv(a, b, e, s) for a, b, s in chans)
        self.context = _FiLMConv(4 * w + e, 4 * w, e, dilation=2)  # 8x8 with the caption broadcast
        self.up = nn.ModuleList([_FiLMConv(8 * w, 4 * w, e), _FiLMConv(6 * w, 2 * w, e), _FiLMConv(2 * w + h, h, e)])
        self.out = nn.Conv2d(h, 1, 1)
        nn.init.constant_(self.out.bias, -3.0)  # prior: a target covers few pixels (training starts stable)
        v = config.verifier_width
        self.verifier = nn.ModuleList([_FiLMConv(5, v, e), _FiLMConv(v, 2 * v, e, 2), _FiLMConv(2 * v, 2 * v, e),
                                       _FiLMConv(2 * v, 4 * v, e, 2), _FiLMConv(4 * v, 4 * v, e)])
        self.correction = nn.Sequential(nn.Linear(8 * v + 11, 64), nn.ReLU(), nn.Linear(64, 1))
        nn.init.zeros_(self.correction[2].weight)  # untrained: the estimate is the fuzzy IoU of map and mask
        nn.init.zeros_(self.correction[2].bias)
        s = config.size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)
        # channels-last weights: ~45% less time per scene pass on this CPU (measured; same values up to rounding)
        self.to(memory_format=torch.channels_last)

    def scene(self, images: torch.Tensor, captions: torch.Tensor) -> SceneCode:
        """The trunk's pass over scenes.

        Args:
            images: uint8 or float (0-255 scale) ``(B, 3, S, S)`` from :func:`resize_image`.
            captions: float ``(B, caption_len)`` from :func:`caption_features`.
        """
        pixels = images.float() / 127.5 - 1.0
        x = torch.cat([pixels, self.coords.expand(len(pixels), -1, -1, -1)], 1)
        e = self.embed(captions.float())
        skips = []
        for i, block in enumerate(self.down):
            if i in (1, 3, 5):
                skips.append(x)
            x = block(x, e)
        x = self.context(torch.cat([x, e[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1), e)
        for block in self.up:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skips.pop()], 1), e)
        return SceneCode(self.out(x).squeeze(1), e, pixels)

    def iou(self, scene: SceneCode, masks: torch.Tensor) -> torch.Tensor:
        """IoU estimates float ``(B,)`` in [0, 1] of masks uint8 ``(B, S, S)``
        (:func:`hlmat_env.masks.coverage_map`, 0-255) in ``scene`` (one scene per mask, :meth:`SceneCode.take`)."""
        from torchvision.ops import roi_align

        p = torch.sigmoid(scene.logits)
        m = masks.float() / 255.0
        fz = fuzzy_iou(p, m)
        inter, pm, mm = (p * m).sum((1, 2)), p.sum((1, 2)), m.sum((1, 2))
        s = m.shape[-1]
        n = float(s * s)
        stats = [fz, inter / (pm + mm - inter + 1e-6), inter / (mm + 1e-6), inter / (pm + 1e-6), mm / n * 10,
                 pm / n * 10, p.amax((1, 2))]
        boxes = mask_boxes(m)
        geometry = [(boxes[:, 0] + boxes[:, 2]) / s - 1, (boxes[:, 1] + boxes[:, 3]) / s - 1,
                    (boxes[:, 2] - boxes[:, 0]) / s, torch.log(mm / n + 1e-4) / 4]
        planes = torch.cat([scene.pixels, m[:, None], p[:, None] * 2 - 1], 1)
        rois = torch.cat([torch.arange(len(m), dtype=boxes.dtype, device=m.device)[:, None], boxes], 1)
        x = roi_align(planes, rois, self.config.crop, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        crop_mask = x[:, 3:4].clamp(0, 1)
        for block in self.verifier:
            x = block(x, scene.embed)
        inside = nn.functional.adaptive_avg_pool2d(crop_mask, x.shape[-2:])
        pooled = torch.cat([x.mean((2, 3)), (x * inside).sum((2, 3)) / (inside.sum((2, 3)) + 1e-3)], 1)
        feats = torch.cat([pooled, torch.stack(stats + geometry, 1)], 1)
        z = torch.logit(fz.clamp(1e-3, 1 - 1e-3)) + self.correction(feats).squeeze(1)
        return torch.sigmoid(z)

    def forward(self, images: torch.Tensor, masks: torch.Tensor,
                captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(IoU estimates (B,) in [0, 1], target-map logits (B, S, S))``; shapes as in :meth:`scene` and
        :meth:`iou` (one mask per scene)."""
        code = self.scene(images, captions)
        return self.iou(code, masks), code.logits

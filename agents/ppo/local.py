"""A translation-equivariant click network for PPO from scratch: the same local detector at every cell.

:class:`LocalClickNet` is a drop-in alternative to :class:`agents.ppo.policy.ClickNet` for
:class:`agents.ppo.policy.SpatialPolicy` (``hlmat train-ppo --net local``): same observation, same feature layout
``[click logits (2 * grid**2), finish logit (0 or 1), value features (value_dim)]``.

Why a second network: trained by PPO alone, ``ClickNet`` learns *where objects usually are* (its coordinate
channels, pooled context and half-resolution bottleneck make the centre of the image an easy answer) and never
*what an object looks like*: its most probable click stays on one of two central cells whatever the image
(docs/agents.md, PPO from scratch). Here every click logit is a function of a local window only (a stride-2 stem
and dilated residual convolutions, no coordinates, no dense layer on the map), so one rewarded click teaches the
detector at every position at once; the only global inputs are the image's mean colour (each pixel also sees its
deviation from it: "different from the background") and the caption (FiLM). The finish logit and the value read
pooled features.
"""
from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from agents.ppo.film import FiLM


class LocalClickNet(BaseFeaturesExtractor):
    """Features ``[click logits (2 * grid**2), finish logit (0 or 1), value features (value_dim)]``.

    Args:
        observation_space: ``Dict(image=Box uint8 (C, S, S)[, caption=Box float32 (D,)])`` whose first three
            channels are RGB (SB3 scales the image to [0, 1] before this module); ``S`` must be even.
        grid: click grid size (the ``S/2`` logit maps are average-pooled to ``grid x grid`` when different).
        finish: whether the action space ends with a finish action.
        width: channels of the ``S/2`` feature map.
        value_dim: size of the value features.
    """

    def __init__(self, observation_space: gym.spaces.Dict, grid: int = 16, finish: bool = True,
                 width: int = 32, value_dim: int = 64):
        self.grid, self.finish, self.value_dim = int(grid), bool(finish), int(value_dim)
        self.n_logits = 2 * self.grid**2 + int(self.finish)
        super().__init__(observation_space, self.n_logits + self.value_dim)
        c, size = observation_space["image"].shape[0], observation_space["image"].shape[-1]
        if size % 2 or c < 4:
            raise ValueError(f"LocalClickNet needs an even observation size and RGB + mask channels, got {c}x{size}")
        d = observation_space["caption"].shape[0] if "caption" in observation_space.spaces else 0
        w = self.width = int(width)
        self.caption_dim = d
        self.stem = nn.Conv2d(c + 3, w, 3, stride=2, padding=1)  # (+3: the colour's deviation from the image mean)
        self.convs = nn.ModuleList([nn.Conv2d(w, w, 3, padding=r, dilation=r) for r in (1, 2, 4)])
        self.films = nn.ModuleList([FiLM(d, w) for _ in self.convs])
        self.head = nn.Conv2d(w, 2, 1)  # positive and negative click logits
        nn.init.zeros_(self.head.weight)  # a uniform first policy: exploration is not biased to any cell
        nn.init.zeros_(self.head.bias)
        self.finish_head = nn.Linear(2 * w + 1, 1) if self.finish else None
        self.value = nn.Linear(2 * w + 1, self.value_dim)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """The features (shapes as in the class docstring)."""
        x = observations["image"]
        n = x.shape[0]
        rgb = x[:, :3]
        cap = observations["caption"].float() if self.caption_dim else x.new_zeros(n, 1)
        h = F.relu(self.stem(torch.cat([x, rgb - rgb.mean((2, 3), keepdim=True)], 1)))
        for conv, film in zip(self.convs, self.films):
            h = film(conv(h), cap) + h  # residual: the stem's local evidence reaches the head unchanged
        clicks = self.head(h)
        if clicks.shape[-1] != self.grid:
            clicks = F.adaptive_avg_pool2d(clicks, self.grid)
        summary = torch.cat([h.mean((2, 3)), h.amax((2, 3)), x[:, 3:4].mean((1, 2, 3))[:, None]], 1)
        parts = [clicks.flatten(1)]
        if self.finish_head is not None:
            parts.append(self.finish_head(summary))
        return torch.cat(parts + [F.relu(self.value(summary))], 1)

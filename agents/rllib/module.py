"""The RLModule: a caption-conditioned CNN over image, mask and click maps with a spatial click head.

:class:`ClickCNNModule` reads the observation of :func:`agents.rllib.env.make_env`, ``Dict(image=uint8
(C, S, S)[, caption=float32 (D,)])``, and acts in ``Discrete(2 * grid**2 + 1)`` (positive click per cell,
negative click per cell, finish; the order of :class:`hlmat_env.wrappers.CoarseClicks`). The network:

- a convolutional trunk over the image scaled to [0, 1] plus two coordinate channels, down to ``S/4``;
- the caption's code (when the observation has one) modulates every convolution (FiLM: ``relu(x * (1 +
  gamma) + beta)``, zero-initialised, so training starts from the caption-free net) and joins the pooled
  context vector; with ``caption="none"`` in the env config the observation has no caption and the module is
  a plain CNN (it cannot ground descriptions then: on multi-object scenes it can only learn to refine the
  object its clicks already touch);
- a 1x1 convolution gives a positive and a negative logit map, resized to ``grid x grid``: click logits are
  a spatial map (no dense layer over cells), the same idea as the SB3 policy's
  :class:`agents.ppo.policy.ClickNet`;
- the finish logit and PPO's value come from the pooled context (mean and max of the last feature map, the
  caption code, and the mean of the current mask).

``model_config`` keys: ``width`` (channels at ``S/2``, twice as many at ``S/4``; default 32) and
``value_hidden`` (default 64).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn
from torch.nn import functional as F

from agents.ppo.film import FiLM


def grid_of(action_space: gym.spaces.Space) -> int:
    """The click grid side of a ``Discrete(2 * grid**2 + 1)`` action space.

    Raises:
        ValueError: any other action space, quoted.
    """
    n = int(getattr(action_space, "n", 0)) if isinstance(action_space, gym.spaces.Discrete) else 0
    grid = int(round(((n - 1) // 2) ** 0.5)) if n > 1 else 0
    if grid < 1 or 2 * grid**2 + 1 != n:
        raise ValueError(f"ClickCNNModule needs a Discrete(2 * grid**2 + 1) action space "
                         f"(agents.rllib.make_env), got {action_space}")
    return grid


class ClickCNNModule(TorchRLModule, ValueFunctionAPI):
    """PPO-ready RLModule for :func:`agents.rllib.env.make_env` envs (see the module docstring)."""

    def setup(self) -> None:
        """Build the trunk, the click, finish and value heads from the spaces and ``model_config``."""
        space = self.observation_space
        if not isinstance(space, gym.spaces.Dict) or "image" not in space.spaces:
            raise ValueError(f"ClickCNNModule needs a Dict observation with an 'image' (C, S, S) Box, "
                             f"got {space}")
        c, size = space["image"].shape[0], space["image"].shape[-1]
        if size % 4:
            raise ValueError(f"ClickCNNModule needs an image side divisible by 4, got {space['image'].shape}")
        self.caption_dim = int(space["caption"].shape[0]) if "caption" in space.spaces else 0
        self.grid = grid_of(self.action_space)
        cfg = dict(self.model_config or {})
        w, hidden, d = int(cfg.get("width", 32)), int(cfg.get("value_hidden", 64)), self.caption_dim
        self.stem = nn.Conv2d(c + 2, w, 3, stride=2, padding=1)                       # S/2
        self.conv2, self.film2 = nn.Conv2d(w, w, 3, padding=1), FiLM(d, w)
        self.conv3, self.film3 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), FiLM(d, 2 * w)  # S/4
        self.conv4, self.film4 = nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), FiLM(d, 2 * w)
        self.context = nn.Linear(4 * w + d + 1, 2 * w)
        self.conv5, self.film5 = nn.Conv2d(2 * w, 2 * w, 3, padding=1), FiLM(d, 2 * w)
        self.click_head = nn.Conv2d(2 * w, 2, 1)
        self.finish_head = nn.Linear(2 * w + 1, 1)
        self.value_head = nn.Sequential(nn.Linear(2 * w + 1, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        for layer in (self.click_head, self.finish_head, self.value_head[-1]):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def _embed(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps, summary)``: the ``S/4`` feature map and the pooled summary (context and mask coverage)."""
        image = obs["image"].float() / 255.0
        n, _, h, w = image.shape
        ys = torch.linspace(-1, 1, h, device=image.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=image.device).view(1, 1, 1, w).expand(n, 1, h, w)
        code = obs["caption"].float() if self.caption_dim else image.new_zeros(n, 1)
        x = F.relu(self.stem(torch.cat([image, xs, ys], 1)))
        x = self.film2(self.conv2(x), code)
        x = self.film3(self.conv3(x), code)
        x = self.film4(self.conv4(x), code)
        coverage = image[:, 3].mean((1, 2)).unsqueeze(1)  # channel 3 is the current mask
        pooled = [x.mean((2, 3)), x.amax((2, 3))] + ([code] if self.caption_dim else []) + [coverage]
        ctx = F.relu(self.context(torch.cat(pooled, 1)))
        x = self.film5(self.conv5(x + ctx[..., None, None]), code)
        return x, torch.cat([ctx, coverage], 1)

    def _logits(self, maps: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        clicks = self.click_head(maps)
        if clicks.shape[-1] >= self.grid:
            clicks = F.adaptive_avg_pool2d(clicks, self.grid)
        else:
            clicks = F.interpolate(clicks, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        return torch.cat([clicks.flatten(1), self.finish_head(summary)], 1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        maps, summary = self._embed(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: self._logits(maps, summary)}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        maps, summary = self._embed(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: self._logits(maps, summary), Columns.EMBEDDINGS: summary}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """PPO's value estimate per sample, shape ``(B,)`` (reuses ``embeddings`` from ``_forward_train``)."""
        if embeddings is None:
            embeddings = self._embed(batch[Columns.OBS])[1]
        return self.value_head(embeddings).squeeze(-1)

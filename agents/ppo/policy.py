"""The PPO policy network: a small caption-conditioned U-shaped net whose click logits are a spatial map.

:class:`ClickNet` reads the stacked observation of :func:`hlmat_env.wrappers.sb3_wrap` (uint8 ``(C, S, S)``
image/mask/click maps, plus the caption's multi-hot code) and outputs, per sample, ``2 * grid**2`` click logits
(a positive and a negative map over the ``grid x grid`` cells, in the order of
:class:`hlmat_env.wrappers.CoarseClicks`), one finish logit when the action space has one, and value features.

Why this shape: the hard part of the task is *grounding* (which object does "the small red disc left of the
blue bar" name?). The caption modulates every convolution (FiLM), a half-resolution stage with dilated
convolutions and a pooled context vector lets relations reach every cell, and a skip connection brings the
detail back to the ``S/2`` map where clicks are chosen. The same map also predicts the *target mask*
(:meth:`ClickNet.maps`): behaviour cloning supervises it densely with the demonstrations' targets, which teaches
grounding from every pixel instead of from one click label. At inference nothing sees the target.
:class:`SpatialPolicy` uses the click logits as they are (no dense action layer).
"""
from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from agents.ppo.film import FiLM


class ClickNet(BaseFeaturesExtractor):
    """Features ``[click logits (2 * grid**2), finish logit (0 or 1), value features (value_dim)]``.

    Args:
        observation_space: ``Dict(image=Box uint8 (C, S, S)[, caption=Box float32 (D,)])`` (SB3 scales the
            image to [0, 1] before this module); ``S`` must be divisible by 4.
        grid: click grid size (the ``S/2`` logit maps are average-pooled to ``grid x grid`` when different).
        finish: whether the action space ends with a finish action.
        width: channels at ``S/2`` (twice as many at ``S/4``).
        value_dim: size of the value features.
    """

    def __init__(self, observation_space: gym.spaces.Dict, grid: int = 32, finish: bool = True,
                 width: int = 32, value_dim: int = 64):
        self.grid, self.finish, self.value_dim = int(grid), bool(finish), int(value_dim)
        self.n_logits = 2 * self.grid**2 + int(self.finish)
        super().__init__(observation_space, self.n_logits + self.value_dim)
        c, size = observation_space["image"].shape[0], observation_space["image"].shape[-1]
        if size % 4:
            raise ValueError(f"ClickNet needs an observation size divisible by 4, got {size}")
        d = observation_space["caption"].shape[0] if "caption" in observation_space.spaces else 0
        w = int(width)
        self.caption_dim = d
        self.stem = nn.Conv2d(c + 2, 16, 3, stride=2, padding=1)                  # S/2
        self.conv2, self.film2 = nn.Conv2d(16, w, 3, padding=1), FiLM(d, w)
        self.conv3, self.film3 = nn.Conv2d(w, w, 3, padding=2, dilation=2), FiLM(d, w)
        self.conv4, self.film4 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), FiLM(d, 2 * w)  # S/4
        self.conv5, self.film5 = nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), FiLM(d, 2 * w)
        self.context = nn.Linear(4 * w + d, 2 * w)
        self.conv6, self.film6 = nn.Conv2d(2 * w, 2 * w, 3, padding=4, dilation=4), FiLM(d, 2 * w)
        self.fuse = nn.Conv2d(3 * w, w, 1)                                           # back at S/2
        self.conv7 = nn.Conv2d(w, w, 3, padding=1)
        self.head = nn.Conv2d(w, 3, 1)  # positive logits, negative logits, target-mask logits
        self.finish_head = nn.Linear(2 * w + 2, 1) if self.finish else None
        self.value = nn.Linear(3 * w + 2, self.value_dim)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def maps(self, observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, target_logits)``: the :meth:`forward` features and the predicted target-mask logits,
        float ``(N, 1, S/2, S/2)`` (for the auxiliary loss of behaviour cloning)."""
        x = observations["image"]
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        mask = x[:, 3:4]
        cap = observations["caption"].float() if self.caption_dim else x.new_zeros(n, 1)
        x = F.relu(self.stem(torch.cat([x, xs, ys], 1)))
        x = self.film2(self.conv2(x), cap)
        skip = self.film3(self.conv3(x), cap)
        x = self.film4(self.conv4(skip), cap)
        x = self.film5(self.conv5(x), cap)
        pooled = [x.mean((2, 3)), x.amax((2, 3))] + ([cap] if self.caption_dim else [])
        ctx = F.relu(self.context(torch.cat(pooled, 1)))
        x = self.film6(self.conv6(x + ctx[..., None, None]), cap)
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        x = F.relu(self.conv7(F.relu(self.fuse(torch.cat([x, skip], 1)))))
        out = self.head(x)
        clicks, target = out[:, :2], out[:, 2:3]
        if clicks.shape[-1] != self.grid:
            clicks = F.adaptive_avg_pool2d(clicks, self.grid)
        # how much the current mask and the predicted target agree: what finishing and the value depend on
        prob = torch.sigmoid(target)
        m = F.adaptive_avg_pool2d(mask, prob.shape[-2:])
        inter, union = (prob * m).mean((1, 2, 3)), (prob + m - prob * m).mean((1, 2, 3))
        agree = torch.stack([inter / (union + 1e-6), m.mean((1, 2, 3))], 1)
        summary = torch.cat([x.mean((2, 3)), ctx, agree], 1)
        parts = [clicks.flatten(1)]
        if self.finish_head is not None:
            parts.append(self.finish_head(torch.cat([ctx, agree], 1)))
        value = F.relu(self.value(summary))
        return torch.cat(parts + [value], 1), target

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """The module's forward pass (shapes as in the class docstring)."""
        return self.maps(observations)[0]


class _SplitHeads(nn.Module):
    """Actor latent = the logits part of the features; critic latent = an MLP over the value part."""

    def __init__(self, n_logits: int, value_dim: int, hidden: int = 64):
        super().__init__()
        self.n_logits, self.latent_dim_pi, self.latent_dim_vf = n_logits, n_logits, hidden
        self.critic = nn.Sequential(nn.Linear(value_dim, hidden), nn.ReLU())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.n_logits]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features[:, self.n_logits:])


class SpatialPolicy(ActorCriticPolicy):
    """Actor-critic whose action logits are :class:`ClickNet`'s maps (identity action head). The net's ``grid``
    and ``finish`` are read from the ``Discrete(2 * grid**2 [+ 1])`` action space, so they cannot disagree."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Discrete, *args, **kwargs):
        n = int(action_space.n)
        grid = int(round((n // 2) ** 0.5))
        if 2 * grid**2 + n % 2 != n:
            raise ValueError(f"SpatialPolicy needs a Discrete(2 * grid**2 [+ 1]) action space, got {action_space}")
        kwargs.setdefault("features_extractor_class", ClickNet)
        kwargs.setdefault("ortho_init", False)
        kwargs["features_extractor_kwargs"] = {**kwargs.get("features_extractor_kwargs", {}), "grid": grid,
                                               "finish": bool(n % 2)}
        super().__init__(observation_space, action_space, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        fe = self.features_extractor
        self.mlp_extractor = _SplitHeads(fe.n_logits, fe.value_dim)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

"""The PPO policy network: a small fully convolutional net whose click logits are a spatial map.

:class:`ClickNet` reads the stacked observation of :func:`hlmat_env.wrappers.sb3_wrap` (uint8 ``(C, S, S)``
image/mask/click maps, plus the caption's multi-hot code) and outputs, per sample, ``2 * grid**2`` click logits
(a positive and a negative map over the ``grid x grid`` cells, in the order of
:class:`hlmat_env.wrappers.CoarseClicks`), one finish logit when the action space has one, and value features.
The caption modulates the convolution features (FiLM), and a pooled context vector is broadcast back so that
relations ("left of the blue disc") can reach every cell. :class:`SpatialPolicy` uses the logits as they are
(no dense action layer), which keeps the click choice tied to image locations.
"""
from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F


class ClickNet(BaseFeaturesExtractor):
    """Features ``[click logits (2 * grid**2), finish logit (0 or 1), value features (value_dim)]``.

    Args:
        observation_space: ``Dict(image=Box uint8 (C, S, S)[, caption=Box float32 (D,)])`` (SB3 scales the
            image to [0, 1] before this module).
        grid: click grid size (the logit maps are pooled to ``grid x grid``).
        finish: whether the action space ends with a finish action.
        width: convolution channels.
        value_dim: size of the value features.
    """

    def __init__(self, observation_space: gym.spaces.Dict, grid: int = 16, finish: bool = False,
                 width: int = 32, value_dim: int = 64):
        self.grid, self.finish, self.value_dim = int(grid), bool(finish), int(value_dim)
        self.n_logits = 2 * self.grid**2 + int(self.finish)
        super().__init__(observation_space, self.n_logits + self.value_dim)
        c = observation_space["image"].shape[0]
        d = observation_space["caption"].shape[0] if "caption" in observation_space.spaces else 0
        self.caption_dim = d
        self.conv1 = nn.Conv2d(c + 2, width, 5, stride=2, padding=2)
        self.film = nn.Linear(max(d, 1), 2 * width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.context = nn.Linear(2 * width + d, width)
        self.conv4 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, 2, 1)
        self.finish_head = nn.Linear(width, 1) if self.finish else None
        self.value = nn.Linear(3 * width, self.value_dim)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        x = observations["image"]
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        x = self.conv1(torch.cat([x, xs, ys], 1))
        cap = observations["caption"].float() if self.caption_dim else x.new_zeros(n, 1)
        gamma, beta = self.film(cap).chunk(2, dim=1)
        x = F.relu(x * (1 + gamma[..., None, None]) + beta[..., None, None])
        x = F.relu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, self.grid) if x.shape[-1] != self.grid else x
        x = F.relu(self.conv3(x))
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))] + ([cap] if self.caption_dim else []), 1)
        ctx = F.relu(self.context(pooled))
        x = F.relu(self.conv4(x + ctx[..., None, None]))
        parts = [self.head(x).flatten(1)]
        if self.finish_head is not None:
            parts.append(self.finish_head(ctx))
        value = F.relu(self.value(torch.cat([x.mean((2, 3)), x.amax((2, 3)), ctx], 1)))
        return torch.cat(parts + [value], 1)


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
    """Actor-critic whose action logits are :class:`ClickNet`'s maps (identity action head)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("features_extractor_class", ClickNet)
        kwargs.setdefault("ortho_init", False)
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        fe = self.features_extractor
        self.mlp_extractor = _SplitHeads(fe.n_logits, fe.value_dim)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

"""FiLM: a caption code modulating a convolution's channels. Torch only, so that the SB3 policy
(:mod:`agents.ppo.policy`) and the RLlib module (:mod:`agents.rllib.module`) share it without either extra."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FiLM(nn.Module):
    """``relu(x * (1 + gamma(code)) + beta(code))``; starts as a plain ReLU (zero-initialised)."""

    def __init__(self, code_dim: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(max(code_dim, 1), 2 * channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Modulate ``x`` (N, C, H, W) by ``code`` (N, code_dim)."""
        gamma, beta = self.linear(code).chunk(2, dim=1)
        return F.relu(x * (1 + gamma[..., None, None]) + beta[..., None, None])

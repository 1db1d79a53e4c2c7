"""A random baseline: uniform click positions with a sensible sign."""
from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import Agent, Decision, register_agent
from hlmat_env.actions import Click, encode_click


class RandomAgent(Agent):
    """Clicks at a uniformly random pixel; the sign is *sensible*: positive where the current mask is empty,
    negative where it is set (only the current mask is read, never the target). It never finishes early.

    Args:
        seed: seed of its own generator (the benchmark passes one per episode for reproducibility).
    """

    name = "random"

    def __init__(self, seed: int | None = 0):
        self.rng = np.random.default_rng(seed)

    def position(self, view: Any, rng: np.random.Generator) -> tuple[int, int]:
        """Pixel ``(x, y)`` to click; uniform here (subclasses choose differently, the sign rule stays)."""
        h, w = view.mask.shape
        return int(rng.integers(w)), int(rng.integers(h))

    def _draw(self, view: Any, rng: np.random.Generator) -> Decision:
        h, w = view.mask.shape
        x, y = self.position(view, rng)
        click = Click(x, y, positive=not bool(view.mask[y, x]))
        return Decision(encode_click(click, w, h, view.coord_bins))

    def act(self, obs: dict, view: Any) -> Decision:
        """Choose the next action for ``obs`` (see :meth:`agents.base.Agent.act`)."""
        return self._draw(view, self.rng)

    def sample(self, obs: dict, view: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` candidate decisions for tree search (see :meth:`agents.base.Agent.sample`)."""
        return [self._draw(view, rng) for _ in range(k)]


register_agent("random", lambda arg=None, **kw: RandomAgent(**kw))

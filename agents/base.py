"""The agent interface shared by every policy (oracle, random, PPO, MLLM) and the registry of agents by spec.

An agent sees the env's observation plus, through ``env`` (the unwrapped :class:`hlmat_env.HLMATEnv`), the
non-privileged full-resolution views ``env.image``, ``env.mask``, ``env.caption`` and ``env.clicks``.
Only the oracle, which *is* the robot user, calls the privileged ``env.expert_action()``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hlmat_env.errors import unknown_name


@dataclass
class Decision:
    """What an agent chose.

    Attributes:
        action: env action ``[kind, x_bin, y_bin]`` (int64), or None when the agent's output was invalid.
        invalid_reason: why the output could not become an action (None when valid).
        text: the raw text a language-model agent wrote, if any.
    """

    action: np.ndarray | None
    invalid_reason: str | None = None
    text: str | None = None

    @property
    def valid(self) -> bool:
        return self.action is not None


class Agent(ABC):
    """A clicking policy. ``reset`` is called after every ``env.reset``; ``act`` once per step."""

    name: str = "agent"

    def reset(self, env: Any) -> None:
        """Start of an episode (``env`` is the unwrapped env, already reset)."""

    @abstractmethod
    def act(self, obs: dict, env: Any) -> Decision:
        """Choose the next action for observation ``obs``."""

    def sample(self, obs: dict, env: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` candidate actions for tree search. Deterministic agents return ``k`` copies of :meth:`act`."""
        d = self.act(obs, env)
        return [d] * k


AGENTS: dict[str, Callable[..., Agent]] = {}


def register_agent(kind: str, factory: Callable[..., Agent]) -> None:
    """Make specs ``KIND`` / ``KIND:ARG`` call ``factory(ARG or None, **kwargs)``."""
    AGENTS[kind] = factory


def make_agent(spec: str | Agent, **kwargs: Any) -> Agent:
    """Build an agent from a spec: ``oracle``, ``random``, ``ppo[:PATH]``, ``mllm:PATH`` (as registered)."""
    if isinstance(spec, Agent):
        return spec
    kind, _, arg = spec.partition(":")
    if kind not in AGENTS:
        _import_builtin_agents()
    if kind not in AGENTS:
        raise unknown_name("agent", kind, AGENTS)
    return AGENTS[kind](arg or None, **kwargs)


def _import_builtin_agents() -> None:
    """Import the modules that register agents (optional ones only if their extras are installed)."""
    import importlib

    for module in ("agents.oracle", "agents.random_agent", "agents.ppo", "agents.mllm"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue

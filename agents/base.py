"""The agent interface shared by every policy (oracle, random, PPO, MLLM) and the registry of agents by spec.

An agent sees the env's observation plus, through ``view`` (an :class:`agents.view.EpisodeView`), the
full-resolution image, current mask, description and clicks, and the snapshot / restore / step that
look-ahead needs; never the target, the dataset or the robot user. Only an agent that *is* the robot user
declares ``privileged = True`` and gets a :class:`agents.view.PrivilegedView` with ``expert_action()``.
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
        """True when the output became an action."""
        return self.action is not None


class Agent(ABC):
    """A clicking policy. ``reset`` is called after every ``env.reset``; ``act`` once per step.

    Attributes:
        name: the name the benchmark reports.
        privileged: True only for an agent that is the robot user (it then acts through a
            :class:`agents.view.PrivilegedView`); every other agent sees a plain :class:`agents.view.EpisodeView`.
    """

    name: str = "agent"
    privileged: bool = False

    def reset(self, view: Any) -> None:
        """Start of an episode (``view``: the read-only view of the episode, already reset)."""

    @abstractmethod
    def act(self, obs: dict, view: Any) -> Decision:
        """Choose the next action for observation ``obs`` (``view``: the read-only view of the episode)."""

    def sample(self, obs: dict, view: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` candidate actions for tree search. Deterministic agents return ``k`` copies of :meth:`act`."""
        d = self.act(obs, view)
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

    for module in ("agents.baselines.oracle", "agents.baselines.random_agent", "agents.ppo", "agents.mllm.policy"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue

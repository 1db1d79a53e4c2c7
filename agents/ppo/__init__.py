"""The PPO baseline: SB3-trained click policy (``PPOAgent``, registered as ``ppo``), its networks (``policy.py``;
``local.py`` for PPO from scratch), behaviour cloning warm start and training loop, and the step judge that decides when to stop (``judge.py``; recorded and
trained by ``python -m agents.ppo.judge_train``). Stable-Baselines3 is imported when a model is built or loaded."""
from __future__ import annotations

from agents.base import register_agent
from agents.ppo.agent import PPOAgent, resolve_model

register_agent("ppo", lambda arg=None, **kw: PPOAgent(arg, **kw))

__all__ = ["PPOAgent", "resolve_model"]

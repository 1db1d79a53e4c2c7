"""hlmat agents: the policies that act in ``HLMATEnv-v0`` and the tools around them.

Public API (what users import from here)::

    from agents import make_agent, run_episode, benchmark
    agent = make_agent("oracle")            # or "random", "ppo", "ppo:PATH", "mllm:PATH"

- :class:`Agent`, :class:`Decision`, :func:`make_agent`, :func:`register_agent` (``agents.base``): the agent
  interface and the registry of agents by spec.
- :class:`EpisodeView`, :class:`PrivilegedView` (``agents.view``): the read-only view agents act through.
- :func:`run_episode`, :class:`Episode` (``agents.rollout``): one episode of an agent.
- :func:`benchmark`, :class:`BenchmarkResult` (``agents.tools.benchmark``): the benchmark protocol.

The rooms, one capability each: ``baselines`` (oracle, random), ``ppo`` (PPO baseline), ``mllm`` (text policy,
tiny VLM, SFT), ``prm`` (process reward model, stop signal, tree search), ``star`` (StaR+ relabelling),
``tools`` (benchmark, demonstrations, statistics, results, speed tests), ``play`` (people annotate from a
browser page, their episodes recorded; replays; humans beside the robot user), ``research`` (one-off model
surgery), ``rllib`` (RLlib: RLModule, PPO config, env creator for env runners on a Ray cluster) and ``cli``
(the ``hlmat`` command). Heavy parts (torch, stable-baselines3, transformers) load on first use.
"""
from __future__ import annotations

from agents.base import Agent, Decision, make_agent, register_agent
from agents.rollout import Episode, run_episode
from agents.lazy import lazy_getattr
from agents.view import EpisodeView, PrivilegedView

__all__ = [
    "Agent", "BenchmarkResult", "Decision", "Episode", "EpisodeView", "PrivilegedView", "benchmark",
    "make_agent", "register_agent", "run_episode",
]

_LAZY = {"benchmark": "agents.tools.benchmark", "BenchmarkResult": "agents.tools.benchmark"}

__getattr__ = lazy_getattr("agents", _LAZY)

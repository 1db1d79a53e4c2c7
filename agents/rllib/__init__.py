"""RLlib past one machine: HLMATEnv-v0 for RLlib's new API stack (RLModule, Learner, env runners).

- :class:`ClickCNNModule` (``agents.rllib.module``): a ``TorchRLModule`` with a value head: a CNN over the
  stacked image, mask and click maps, conditioned on the caption's code by FiLM (or without a caption), whose
  click logits are a spatial map over the click grid plus one finish logit.
- :func:`ppo_config` (``agents.rllib.config``): a ready ``PPOConfig`` (env, module, env runners, one torch
  thread each) that users extend with their own settings.
- :func:`make_env`, :func:`env_config`, :func:`register` (``agents.rllib.env``): the env creator that env
  runners call, registered with ``ray.tune.register_env`` as ``"hlmat"``.
- :func:`module_episodes`, :func:`module_action` (``agents.rllib.rollout``): play a trained module (or random
  actions) on episodes in process, without Ray, and return the final IoUs.

Ray loads on first use (``pip install "hlmat[rllib]"``); importing this package does not need it.
See ``examples/rllib_ppo.py`` and the Agents page of the docs.
"""
from __future__ import annotations

from agents.lazy import lazy_getattr

__all__ = ["ENV_NAME", "ClickCNNModule", "env_config", "make_env", "module_action", "module_episodes",
           "module_spec", "ppo_config", "register"]

_LAZY = {"ClickCNNModule": "agents.rllib.module", "module_spec": "agents.rllib.config",
         "ppo_config": "agents.rllib.config", "ENV_NAME": "agents.rllib.env",
         "env_config": "agents.rllib.env",
         "make_env": "agents.rllib.env", "register": "agents.rllib.env",
         "module_action": "agents.rllib.rollout", "module_episodes": "agents.rllib.rollout"}

__getattr__ = lazy_getattr("agents.rllib", _LAZY)

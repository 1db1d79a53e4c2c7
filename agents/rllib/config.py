"""``ppo_config(...)``: a ready RLlib ``PPOConfig`` for HLMATEnv-v0 with ClickCNNModule and N env runners.

The result is an ordinary ``PPOConfig``: change anything with its own methods before ``build_algo()``. Every
env runner gets one CPU and one env with one torch thread; the learner runs in the driver (``num_learners=0``)
unless you call ``.learners(num_learners=...)`` to put learners (and GPUs) on other machines of the Ray
cluster.
"""
from __future__ import annotations

from typing import Any

from agents.rllib.env import ENV_NAME, env_config, register


def module_spec(width: int = 32, value_hidden: int = 64) -> Any:
    """The ``RLModuleSpec`` of :class:`agents.rllib.module.ClickCNNModule` (spaces come from the env).

    Args:
        width: channels at ``S/2`` (twice as many at ``S/4``).
        value_hidden: hidden units of the value head.
    """
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from agents.rllib.module import ClickCNNModule

    return RLModuleSpec(module_class=ClickCNNModule, model_config={"width": int(width),
                                                                   "value_hidden": int(value_hidden)})


def ppo_config(
    dataset: str = "synthetic:train",
    num_env_runners: int = 2,
    *,
    size: int = 64,
    grid: int = 16,
    caption: str = "multihot",
    max_clicks: int = 20,
    env_kwargs: dict[str, Any] | None = None,
    width: int = 32,
    train_batch_size: int = 1024,
    minibatch_size: int = 128,
    num_epochs: int = 4,
    lr: float = 3e-4,
    gamma: float = 0.99,
    entropy_coeff: float = 0.01,
    seed: int | None = 0,
    sample_timeout_s: float | None = 600.0,
) -> Any:
    """A ``PPOConfig`` (RLlib's new API stack) that trains :class:`ClickCNNModule` on ``HLMATEnv-v0``.

    Args:
        dataset: the env's dataset spec (e.g. ``"synthetic:train"``, ``"coco:ANN.json"``).
        num_env_runners: remote env runners sampling in parallel (0: sample in the driver).
        size: observation side (multiple of 4).
        grid: click grid side; actions are ``Discrete(2 * grid**2 + 1)``.
        caption: ``"multihot"`` (the synthetic descriptions' words and relation), ``"hashed"`` (hashed word
            bags, any caption) or ``"none"`` (dropped: the module then ignores the description).
        max_clicks: the env's click budget per episode.
        env_kwargs: further ``HLMATEnv`` arguments (``segmenter``, ``start``...).
        width: the module's channel width.
        train_batch_size: env steps per training iteration (``train_batch_size_per_learner``).
        minibatch_size: SGD minibatch size.
        num_epochs: passes over each train batch.
        lr: Adam learning rate.
        gamma: discount (the rewards are IoU changes; their undiscounted sum is the final IoU gain).
        entropy_coeff: entropy bonus.
        seed: RLlib's seed (env runners and module), or None.
        sample_timeout_s: how long an iteration waits for the env runners' samples. RLlib's default (60 s)
            discards every sample of a runner that takes longer, which on a loaded machine leaves iterations
            without data (seen on the shared 2-core machine at load 14: 2 of 8 iterations sampled nothing).

    Returns:
        The ``PPOConfig``; ``.build_algo()`` then ``.train()``. Registers the env creator as ``"hlmat"``.

    Raises:
        ValueError: an invalid env setting (see :func:`agents.rllib.env.env_config`) or
            ``num_env_runners < 0``.
    """
    from ray.rllib.algorithms.ppo import PPOConfig

    if int(num_env_runners) < 0:
        raise ValueError(f"num_env_runners must be >= 0, got {num_env_runners}")
    kwargs = {"max_clicks": int(max_clicks), **dict(env_kwargs or {})}
    cfg = env_config(dataset=dataset, size=size, grid=grid, caption=caption, env_kwargs=kwargs)
    register(ENV_NAME)
    config = (PPOConfig()
              .environment(ENV_NAME, env_config=cfg)
              .env_runners(num_env_runners=int(num_env_runners), num_envs_per_env_runner=1,
                           num_cpus_per_env_runner=1, rollout_fragment_length="auto",
                           sample_timeout_s=sample_timeout_s)
              .learners(num_learners=0)
              .rl_module(rl_module_spec=module_spec(width=width))
              .training(lr=lr, gamma=gamma, lambda_=0.95, train_batch_size_per_learner=int(train_batch_size),
                        minibatch_size=int(minibatch_size), num_epochs=int(num_epochs),
                        entropy_coeff=entropy_coeff, vf_loss_coeff=0.5, clip_param=0.2))
    if seed is not None:
        config = config.debugging(seed=int(seed))
    return config

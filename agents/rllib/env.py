"""The env RLlib's env runners build: ``HLMATEnv-v0`` behind the same array wrappers as the SB3 policy.

RLlib's connectors batch ``Box`` leaves of a ``Dict`` observation but not ``Text``, and a ``MultiDiscrete``
action over 1000 x 1000 coordinate bins is no space to explore in; so :func:`make_env` applies
:mod:`hlmat_env.wrappers`: :class:`~hlmat_env.wrappers.CoarseClicks` (``Discrete(2 * grid**2 + 1)``:
positive or negative click in a grid cell, or finish), the caption as a fixed-length multi-hot code
(:class:`~hlmat_env.wrappers.EncodeCaption`) or dropped (:class:`~hlmat_env.wrappers.DropCaption`), and
:class:`~hlmat_env.wrappers.StackImageMask` (RGB, current mask and click maps as one uint8 ``(C, S, S)``
array).
:func:`register` names the creator ``"hlmat"`` for ``config.environment("hlmat", env_config=...)``.
"""
from __future__ import annotations

from typing import Any, Mapping

ENV_NAME = "hlmat"
CAPTIONS = ("multihot", "hashed", "none")
DEFAULT_ENV_CONFIG: dict[str, Any] = {"dataset": "synthetic:train", "size": 64, "grid": 16, "clicks": True,
                                      "caption": "multihot", "env_kwargs": {}}


def env_config(**overrides: Any) -> dict[str, Any]:
    """:data:`DEFAULT_ENV_CONFIG` with ``overrides`` applied and checked (what :func:`make_env` reads).

    Args:
        **overrides: ``dataset`` (spec), ``size`` (observation side, divisible by 4), ``grid`` (click grid
            side), ``clicks`` (click maps as channels), ``caption`` (``"multihot"``, ``"hashed"`` or
            ``"none"``) and ``env_kwargs`` (extra ``HLMATEnv`` arguments such as ``max_clicks``).

    Raises:
        ValueError: an unknown key or an invalid value, named in the message.
    """
    unknown = sorted(set(overrides) - set(DEFAULT_ENV_CONFIG))
    if unknown:
        raise ValueError(f"unknown RLlib env config keys {unknown}; known: {sorted(DEFAULT_ENV_CONFIG)}")
    cfg = {**DEFAULT_ENV_CONFIG, **overrides}
    cfg["env_kwargs"] = dict(cfg["env_kwargs"] or {})
    if cfg["caption"] not in CAPTIONS:
        raise ValueError(f"caption must be one of {CAPTIONS}, got {cfg['caption']!r}")
    if int(cfg["size"]) < 8 or int(cfg["size"]) % 4:
        raise ValueError(f"size must be a multiple of 4 and >= 8, got {cfg['size']!r}")
    if int(cfg["grid"]) < 1 or int(cfg["grid"]) > int(cfg["size"]):
        raise ValueError(f"grid must lie in [1, size={cfg['size']}], got {cfg['grid']!r}")
    return cfg


def make_env(config: Mapping[str, Any] | None = None) -> Any:
    """Build the wrapped env from an env config (RLlib passes its ``EnvContext``, a dict).

    Observation ``Dict(image=Box uint8 (C, size, size)[, caption=Box float32 (D,)])`` with ``C = 6`` (RGB,
    mask, positive and negative click maps) or 4 without click maps; action ``Discrete(2 * grid**2 + 1)``.
    Sets one torch thread in the calling process (an env runner) when torch is loaded.

    Args:
        config: keys of :func:`env_config` (missing ones take the defaults; RLlib's extra ``EnvContext``
            attributes are ignored).
    """
    import sys

    import gymnasium as gym

    import hlmat_env  # noqa: F401 - registers HLMATEnv-v0 in the runner's process
    from hlmat_env.wrappers import CoarseClicks, DropCaption, EncodeCaption, StackImageMask

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    cfg = env_config(**{k: v for k, v in dict(config or {}).items() if k in DEFAULT_ENV_CONFIG})
    env = gym.make("HLMATEnv-v0", dataset=cfg["dataset"], **cfg["env_kwargs"])
    env = CoarseClicks(env, grid=int(cfg["grid"]), finish=True)
    env = DropCaption(env) if cfg["caption"] == "none" else EncodeCaption(env, code=cfg["caption"])
    return StackImageMask(env, size=int(cfg["size"]), clicks=bool(cfg["clicks"]))


def register(name: str = ENV_NAME) -> str:
    """Register :func:`make_env` with ``ray.tune.register_env`` under ``name``; returns ``name``."""
    from ray.tune.registry import register_env

    register_env(name, make_env)
    return name

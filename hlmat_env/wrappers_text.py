"""``TextActions``: step the env with the strings a language model writes (``"Positive point: (512, 480)"``).

Invalid-text policy (documented, chosen by ``on_invalid``):

* ``"terminate"`` (default, the benchmark's policy): the episode ends (``terminated=True``), the mask is kept,
  the reward is ``invalid_reward`` (0.0 by default), no click is placed.
* ``"continue"``: nothing changes and the episode goes on (an RL script can retry); the step costs no click but
  counts towards ``max_invalid``; once that many invalid steps happened the episode is truncated.

Either way ``info["invalid_action"]`` holds the reason (``None`` after a valid step) and ``info["parsed"]`` the
:class:`~hlmat_env.codecs.ParsedAction`. ``Finish`` terminates as the finish action does.

Example:
    >>> import gymnasium as gym, hlmat_env
    >>> from hlmat_env.wrappers_text import TextActions
    >>> env = TextActions(gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=my_segmenter), "qwen2")
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> obs, r, term, trunc, info = env.step("Positive point: (500, 500)")  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from hlmat_env.codecs import MAX_TEXT_LENGTH, Codec, get_codec

INVALID_POLICIES = ("terminate", "continue")


class TextActions(gym.ActionWrapper):
    """Action space ``Text``: answers parsed by a coordinate codec (see :mod:`hlmat_env.codecs`).

    Args:
        env: an ``HLMATEnv-v0`` env (wrapped or not).
        codec: codec name (``"segagent-qwen"``, ``"qwen2"``, ``"qwen3"``, ``"qwen25"``, ``"llava"``) or a Codec.
        on_invalid: ``"terminate"`` or ``"continue"`` (see the module docstring).
        invalid_reward: reward of an invalid step.
        max_invalid: with ``"continue"``, truncate after this many invalid steps (default: the click budget).
    """

    def __init__(self, env: gym.Env, codec: str | Codec = "segagent-qwen", on_invalid: str = "terminate",
                 invalid_reward: float = 0.0, max_invalid: int | None = None):
        super().__init__(env)
        if on_invalid not in INVALID_POLICIES:
            raise ValueError(f"on_invalid must be one of {list(INVALID_POLICIES)}, got {on_invalid!r}")
        self.codec = get_codec(codec)
        self.on_invalid, self.invalid_reward = on_invalid, float(invalid_reward)
        self.max_invalid = int(max_invalid if max_invalid is not None else env.unwrapped.max_clicks)
        self.action_space = spaces.Text(max_length=MAX_TEXT_LENGTH)
        self.num_invalid = 0
        self._last: tuple[Any, dict[str, Any]] | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.num_invalid = 0
        info = {**info, "invalid_action": None}
        self._last = (obs, info)
        return obs, info

    def action(self, action: str):  # gym.ActionWrapper API; step() below does the work
        u = self.env.unwrapped
        h, w = u.image.shape[:2]
        return self.codec.parse(action, w, h).to_action(w, h, u.coord_bins)

    def step(self, action: str):
        if self._last is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        u = self.env.unwrapped
        h, w = u.image.shape[:2]
        parsed = self.codec.parse(action, w, h)
        if parsed.valid:
            obs, reward, terminated, truncated, info = self.env.step(parsed.to_action(w, h, u.coord_bins))
            info = {**info, "invalid_action": None, "parsed": parsed}
            self._last = (obs, info)
            return obs, reward, terminated, truncated, info
        self.num_invalid += 1
        obs, info = self._last
        info = {**info, "invalid_action": parsed.invalid, "parsed": parsed}
        terminated = self.on_invalid == "terminate"
        truncated = not terminated and self.num_invalid >= self.max_invalid
        return obs, self.invalid_reward, terminated, truncated, info

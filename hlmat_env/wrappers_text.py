"""``TextActions``: step the env with the strings a language model writes (``"Positive point: (512, 480)"``).

Invalid-text policy (documented, chosen by ``on_invalid``):

* ``"terminate"`` (default, the benchmark's policy): the episode ends (``terminated=True``), the mask is kept,
  the reward is ``invalid_reward`` (0.0 by default), no click is placed.
* ``"continue"``: nothing changes and the episode goes on (an RL script can retry); the step costs no click but
  counts towards ``max_invalid``; once that many invalid steps happened the episode is truncated.

Either way ``info["invalid_action"]`` holds the reason (``None`` after a valid step) and ``info["parsed"]`` the
:class:`~hlmat_env.codecs.ParsedAction`. ``Finish`` terminates as the finish action does.

After any step that returned ``terminated`` or ``truncated`` (finish, the click budget, an invalid text under
``"terminate"``, ``max_invalid`` under ``"continue"``), the episode has ended: the next :meth:`TextActions.step`,
whatever its text, raises :class:`~hlmat_env.errors.HLMATError` ("call reset()"), as the env itself does.

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
import numpy as np
from gymnasium import spaces

from hlmat_env.codecs import MAX_TEXT_LENGTH, Codec, get_codec
from hlmat_env.errors import HLMATError, InvalidOption

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
        if not isinstance(on_invalid, str) or on_invalid not in INVALID_POLICIES:
            raise InvalidOption(f"on_invalid must be one of {list(INVALID_POLICIES)}, got {on_invalid!r}")
        self.codec = get_codec(codec)
        self.on_invalid, self.invalid_reward = on_invalid, float(invalid_reward)
        self.max_invalid = int(max_invalid if max_invalid is not None else env.unwrapped.max_clicks)
        self.action_space = spaces.Text(max_length=MAX_TEXT_LENGTH)
        self.num_invalid = 0
        self.ended = False
        self._last: tuple[Any, dict[str, Any]] | None = None

    def reset(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reset the wrapped env (same arguments); the info gains ``invalid_action=None``.

        Returns:
            ``(observation, info)`` of the wrapped env.
        """
        self._last = None
        self.ended = False
        obs, info = self.env.reset(**kwargs)
        self.num_invalid = 0
        info = {**info, "invalid_action": None}
        self._last = (obs, info)
        return obs, info

    def action(self, action: str) -> np.ndarray:
        """The env action ``[kind, x_bin, y_bin]`` of a text (gym.ActionWrapper API; :meth:`step` does the work).

        Raises:
            ValueError: the text is not a valid action.
        """
        u = self.env.unwrapped
        h, w = u.image.shape[:2]
        return self.codec.parse(action, w, h).to_action(w, h, u.coord_bins)

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Parse ``action`` with the codec and step the env (see the module docstring for invalid texts).

        Args:
            action: the model's answer (any str; a non-str is an invalid text).

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``info["invalid_action"]`` and
            ``info["parsed"]`` added.

        Raises:
            gymnasium.error.ResetNeeded: before the first :meth:`reset`.
            HLMATError: the episode has ended (a previous step returned terminated or truncated).
        """
        if self._last is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self.ended:
            raise HLMATError("the episode has ended (finish, click budget or invalid text); call reset()")
        u = self.env.unwrapped
        h, w = u.image.shape[:2]
        parsed = self.codec.parse(action, w, h)  # never raises: a non-str is an invalid text
        if parsed.valid:
            obs, reward, terminated, truncated, info = self.env.step(parsed.to_action(w, h, u.coord_bins))
            info = {**info, "invalid_action": None, "parsed": parsed}
            self._last = (obs, info)
            self.ended = bool(terminated or truncated)
            return obs, reward, terminated, truncated, info
        self.num_invalid += 1
        obs, info = self._last
        info = {**info, "invalid_action": parsed.invalid, "parsed": parsed}
        terminated = self.on_invalid == "terminate"
        truncated = not terminated and self.num_invalid >= self.max_invalid
        self.ended = terminated or truncated
        return obs, self.invalid_reward, terminated, truncated, info

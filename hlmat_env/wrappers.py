"""Wrappers that make ``HLMATEnv`` ready for Stable-Baselines3 (and other array-only RL libraries).

* :class:`CoarseClicks` - a ``Discrete`` action over a ``grid x grid`` click grid (positive or negative per
  cell, optionally finish) mapped to the env's coordinate bins;
* :class:`EncodeCaption` - the caption as a fixed-length code (:mod:`hlmat_env.captions`: a multi-hot vector
  of the target phrase's words, the anchor phrase's words and the relation, or hashed bags of every word);
  :class:`DropCaption` removes it;
* :class:`StackImageMask` - image, current mask and (optionally) click maps stacked as channels, downscaled.

:func:`sb3_wrap` applies all three. Every wrapper reads only the public, non-privileged views of the env.

>>> import gymnasium as gym, hlmat_env
>>> env = sb3_wrap(gym.make("HLMATEnv-v0", dataset="synthetic:val"), size=32, grid=8)  # doctest: +SKIP
>>> env.action_space, env.observation_space["image"].shape  # doctest: +SKIP
(Discrete(128), (6, 32, 32))
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hlmat_env.actions import Click, encode_click, is_int
from hlmat_env.captions import RELATIONS, VOCABULARY, caption_features, code_length, encode_caption
from hlmat_env.errors import InvalidAction

__all__ = ["RELATIONS", "VOCABULARY", "CoarseClicks", "DropCaption", "EncodeCaption", "StackImageMask",
           "caption_features", "cell_click", "click_to_cell", "encode_caption", "sb3_wrap", "stack_image_mask"]


class CoarseClicks(gym.ActionWrapper):
    """``Discrete(2 * grid**2 [+ 1])`` actions: ``a < grid**2`` a positive click in cell ``a``, the next
    ``grid**2`` negative clicks, and (when ``finish``) the last action finishes. Cell ``c`` is row
    ``c // grid``, column ``c % grid`` of a grid over the full-resolution image; the click goes to the cell's
    centre pixel.

    >>> cell_click(0, 4, 100, 50), cell_click(4 * 4 + 5, 4, 100, 50)
    (Click(x=12, y=6, positive=True), Click(x=37, y=18, positive=False))
    """

    def __init__(self, env: gym.Env, grid: int = 16, finish: bool = True):
        super().__init__(env)
        if not isinstance(grid, (int, np.integer)) or grid < 1:
            raise ValueError(f"grid must be an integer >= 1, got {grid!r}")
        self.grid, self.finish = int(grid), bool(finish)
        self.action_space = spaces.Discrete(2 * self.grid**2 + int(self.finish))

    def action(self, action: Any) -> np.ndarray:
        """The env action ``[kind, x_bin, y_bin]`` (int64) of grid action ``action``.

        Args:
            action: an integer in ``[0, action_space.n)``: a Python or NumPy integer, or an integer array with
                one element (what vector envs and SB3 pass). Floats, bools and strings are refused, not rounded.

        Raises:
            InvalidAction: not an integer, or out of range, quoting the value.
        """
        a = action
        if isinstance(a, np.ndarray) and a.size == 1 and a.dtype.kind in "iu":
            a = a.reshape(())[()]
        if not is_int(a):
            raise InvalidAction(f"action must be an integer in [0, {self.action_space.n}), got {action!r} "
                                f"({type(action).__name__})")
        a = int(a)
        if not 0 <= a < self.action_space.n:
            raise InvalidAction(f"action must lie in [0, {self.action_space.n}), got {action!r}")
        u = self.env.unwrapped
        h, w = u.mask.shape
        click = None if a == 2 * self.grid**2 else cell_click(a, self.grid, w, h)
        return encode_click(click, w, h, u.coord_bins)

    def encode(self, click: Click | None, width: int, height: int) -> int:
        """The action of the cell holding ``click`` (pixel coordinates); ``None`` is finish."""
        return click_to_cell(click, self.grid, width, height, self.finish)


def cell_click(a: int, grid: int, width: int, height: int) -> Click:
    """The click of grid action ``a < 2 * grid**2`` on a ``width x height`` image (the cell's centre)."""
    cell, positive = a % grid**2, a < grid**2
    row, col = divmod(cell, grid)
    return Click(min(width - 1, int((col + 0.5) * width / grid)), min(height - 1, int((row + 0.5) * height / grid)),
                 positive)


def click_to_cell(click: Click | None, grid: int, width: int, height: int, finish: bool = True) -> int:
    """Inverse of :func:`cell_click`: the grid action whose cell contains ``click`` (finish for ``None``).

    >>> click_to_cell(Click(37, 18, False), 4, 100, 50)
    21
    """
    if click is None:
        if not finish:
            raise ValueError("finish is not an action of this grid (finish=False)")
        return 2 * grid**2
    col, row = min(grid - 1, click.x * grid // width), min(grid - 1, click.y * grid // height)
    return row * grid + col + (0 if click.positive else grid**2)


class EncodeCaption(gym.ObservationWrapper):
    """Replace the caption text by a fixed-length float32 code (:mod:`hlmat_env.captions`).

    ``code="multihot"`` (default): a multi-hot vector of length ``2 * len(vocabulary) + len(relations)``:
    words of the target phrase (before the first relation), words of the anchor phrase (after it), and the
    relation one-hot. Unknown words are ignored; matching is case-insensitive. The defaults cover the
    synthetic dataset's descriptions ("the small red disc left of the blue square").
    ``code="hashed"``: :func:`hlmat_env.captions.caption_features` (hashed bags of every word, any caption).
    """

    def __init__(self, env: gym.Env, vocabulary: Sequence[str] = VOCABULARY, relations: Sequence[str] = RELATIONS,
                 code: str = "multihot"):
        super().__init__(env)
        self.vocabulary, self.relations, self.code = tuple(vocabulary), tuple(relations), code
        n = 2 * len(self.vocabulary) + len(self.relations) if code == "multihot" else code_length(code)
        self.observation_space = spaces.Dict({**self.env.observation_space.spaces,
                                              "caption": spaces.Box(0.0, 1.0, (n,), np.float32)})

    def observation(self, observation: dict) -> dict:
        """The observation with ``caption`` replaced by its float32 code (shape ``(D,)``)."""
        text = observation["caption"]
        code = (encode_caption(text, self.vocabulary, self.relations) if self.code == "multihot"
                else caption_features(text))
        return {**observation, "caption": code}


class DropCaption(gym.ObservationWrapper):
    """Remove the caption from the observation (for policies that ignore it)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = spaces.Dict({k: s for k, s in self.env.observation_space.spaces.items()
                                              if k != "caption"})

    def observation(self, observation: dict) -> dict:
        """The observation without ``caption``."""
        return {k: v for k, v in observation.items() if k != "caption"}


class StackImageMask(gym.ObservationWrapper):
    """Replace ``image`` and ``mask`` by one channels-first uint8 ``(C, size, size)`` array ``"image"``: RGB,
    the current mask (0/255) and, when ``clicks``, a map of positive and a map of negative clicks (255 at the
    clicked pixels, scaled to ``size``), so ``C`` is 4 or 6. Other keys pass through.
    """

    def __init__(self, env: gym.Env, size: int = 64, clicks: bool = True):
        super().__init__(env)
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ValueError(f"size must be an integer >= 8, got {size!r}")
        self.size, self.clicks = int(size), bool(clicks)
        c = 6 if self.clicks else 4
        rest = {k: s for k, s in self.env.observation_space.spaces.items() if k not in ("image", "mask")}
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (c, self.size, self.size), np.uint8),
                                              **rest})

    def observation(self, observation: dict) -> dict:
        """The observation with ``image`` and ``mask`` replaced by the stacked uint8 ``(C, size, size)`` image."""
        u = self.env.unwrapped
        clicks = u.clicks if self.clicks else None
        stacked = stack_image_mask(observation["image"], observation["mask"], self.size, clicks, u.mask.shape)
        rest = {k: v for k, v in observation.items() if k not in ("image", "mask")}
        return {"image": stacked, **rest}


def stack_image_mask(image: np.ndarray, mask: np.ndarray, size: int, clicks: Sequence[Click] | None = None,
                     full_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Stack an RGB image (uint8 HxWx3) and a mask (uint8 HxW or HxWx1, 0/255) into uint8 ``(C, size, size)``;
    with ``clicks`` (pixel coordinates on an image of ``full_shape = (H, W)``) two click maps are added."""
    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    m = cv2.resize(np.ascontiguousarray(mask.reshape(mask.shape[:2])), (size, size),
                   interpolation=cv2.INTER_NEAREST)
    planes = [img[..., 0], img[..., 1], img[..., 2], m]
    if clicks is not None:
        if full_shape is None:
            raise ValueError("full_shape (H, W) is needed to place the clicks")
        h, w = full_shape
        maps = np.zeros((2, size, size), np.uint8)
        for c in clicks:
            maps[0 if c.positive else 1, min(size - 1, c.y * size // h), min(size - 1, c.x * size // w)] = 255
        planes += [maps[0], maps[1]]
    return np.ascontiguousarray(np.stack(planes))


def sb3_wrap(env: gym.Env, size: int = 64, grid: int = 16, finish: bool = False, clicks: bool = True,
             caption: bool = True, caption_code: str = "multihot") -> gym.Env:
    """The SB3-ready stack: :class:`CoarseClicks`, then :class:`EncodeCaption` with ``caption_code`` (or
    :class:`DropCaption` when ``caption`` is False), then :class:`StackImageMask`.
    Observation ``Dict(image=uint8 (C, size, size)[, caption=float32 (D,)])``, action ``Discrete(2 * grid**2 [+ 1])``."""
    env = CoarseClicks(env, grid=grid, finish=finish)
    env = EncodeCaption(env, code=caption_code) if caption else DropCaption(env)
    return StackImageMask(env, size=size, clicks=clicks)


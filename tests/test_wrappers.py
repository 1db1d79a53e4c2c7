"""SB3-ready wrappers: SB3's check_env, the grid action mapping, caption codes, stacked observations."""
from __future__ import annotations

import doctest
import warnings

import gymnasium as gym
import numpy as np
import pytest

import hlmat_env.wrappers as W
from hlmat_env.actions import Click
from hlmat_env.datasets.synthetic import SyntheticDataset

SMALL = SyntheticDataset("val", size=3)


def make(seg, **kw):
    return W.sb3_wrap(gym.make("HLMATEnv-v0", dataset=SMALL, segmenter=seg, max_clicks=4), **kw)


def test_doctests():
    assert doctest.testmod(W).failed == 0


@pytest.mark.parametrize("kw", [{}, {"finish": True, "clicks": False, "caption": False, "size": 40, "grid": 8}])
def test_sb3_check_env(disc_segmenter, kw):
    from stable_baselines3.common.env_checker import check_env

    env = make(disc_segmenter, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, warn=True)


def test_spaces_and_fresh_observations(disc_segmenter):
    env = make(disc_segmenter, size=32, grid=8)
    assert env.action_space == gym.spaces.Discrete(128)
    obs, info = env.reset(seed=0, options={"index": 1})
    assert obs in env.observation_space and obs["image"].shape == (6, 32, 32)
    assert obs["caption"].sum() >= 1  # "the <shape>" at least
    first = obs["image"].copy()
    obs2, r, term, trunc, _ = env.step(0)
    assert type(r) is float and not term
    np.testing.assert_array_equal(obs["image"], first)  # the earlier observation was not modified in place
    assert obs2["image"][4].max() == 255 and obs2["image"][5].max() == 0  # one positive click map dot


def test_grid_action_reaches_cell_centres(disc_segmenter):
    env = make(disc_segmenter, grid=4, finish=True)
    env.reset(seed=0, options={"index": 0})
    u = env.unwrapped
    h, w = u.mask.shape
    env.step(4 * 4 + 5)  # negative click, row 1, column 1
    assert u.clicks[-1] == W.cell_click(21, 4, w, h) == Click(int(1.5 * w / 4), int(1.5 * h / 4), False)
    _, _, term, _, _ = env.step(2 * 16)
    assert term
    with pytest.raises(ValueError, match="must lie in"):
        env.step(33)


def test_click_to_cell_roundtrip():
    for a in range(2 * 6**2):
        assert W.click_to_cell(W.cell_click(a, 6, 160, 120), 6, 160, 120) == a
    with pytest.raises(ValueError, match="finish"):
        W.click_to_cell(None, 6, 160, 120, finish=False)


def test_caption_code():
    v = len(W.VOCABULARY)
    code = W.encode_caption("The small Red star  above the blue disc")
    assert code.shape == (2 * v + len(W.RELATIONS),)
    on = {i for i in np.flatnonzero(code)}
    idx = W.VOCABULARY.index
    assert on == {idx("small"), idx("red"), idx("star"), v + idx("blue"), v + idx("disc"),
                  2 * v + W.RELATIONS.index("above")}
    assert W.encode_caption("").sum() == 0 and W.encode_caption("a purple unicorn").sum() == 1


def test_bad_arguments(disc_segmenter):
    base = gym.make("HLMATEnv-v0", dataset=SMALL, segmenter=disc_segmenter)
    with pytest.raises(ValueError, match="grid"):
        W.CoarseClicks(base, grid=0)
    with pytest.raises(ValueError, match="size"):
        W.StackImageMask(base, size=4)

"""The env's contract: Gymnasium checks, determinism, rewards, start states, snapshots, errors, vector envs."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hlmat_env
from hlmat_env import Click, HLMATError, InvalidAction
from hlmat_env.datasets.synthetic import SyntheticDataset

SMALL = SyntheticDataset("val", size=6)


def make(seg, **kw):
    return gym.make("HLMATEnv-v0", dataset=SMALL, segmenter=seg, **kw)


def test_register_is_idempotent():
    import importlib

    importlib.reload(hlmat_env)
    assert "HLMATEnv-v0" in gym.registry


def test_check_env_is_silent(disc_segmenter):
    env = make(disc_segmenter, max_clicks=5, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


def test_spaces_and_observation(disc_segmenter):
    env = make(disc_segmenter, obs_size=64)
    obs, info = env.reset(seed=1)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["mask"].shape == (64, 64, 1) and set(np.unique(obs["mask"])) <= {0, 255}
    assert isinstance(obs["caption"], str) and obs["caption"] and obs in env.observation_space
    assert set(info) == {"iou", "intersection", "union", "num_clicks", "sample_id", "index", "caption"}
    obs2, r, term, trunc, info2 = env.step(env.unwrapped.expert_action())
    assert set(info2) == set(info) and type(r) is float and not term
    assert obs2["mask"].max() == 255  # the first expert click is positive and paints a disc


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = make(_disc(), max_clicks=6)
        obs, info = env.reset(seed=seed)
        out = [(info["sample_id"], obs["mask"].tobytes())]
        for _ in range(6):
            obs, r, term, trunc, info = env.step(env.unwrapped.expert_action())
            out.append((r, info["iou"], obs["mask"].tobytes()))
            if term or trunc:
                break
        for _ in range(3):  # random actions from a seeded action space
            env.reset()
            env.action_space.seed(seed)
            obs, r, *_ = env.step(env.action_space.sample())
            out.append((r, obs["mask"].tobytes()))
        return out

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


def test_rewards_sum_to_iou_change_and_budget_truncates(disc_segmenter):
    env = make(disc_segmenter, max_clicks=4)
    _, info = env.reset(seed=0, options={"index": 2})
    total, first = 0.0, info["iou"]
    for k in range(4):
        _, r, term, trunc, info = env.step(env.unwrapped.expert_action())
        total += r
        assert trunc == (k == 3) and not term
    assert total == pytest.approx(info["iou"] - first)
    with pytest.raises(HLMATError, match="reset"):
        env.step(np.array([0, 1, 1]))


def test_finish_terminates_with_zero_reward(disc_segmenter):
    env = make(disc_segmenter)
    env.reset(seed=0)
    _, r, term, trunc, _ = env.step(np.array([2, 0, 0]))
    assert (r, term, trunc) == (0.0, True, False)


@pytest.mark.parametrize("bad", [np.array([3, 0, 0]), np.array([0, 1000, 0]), np.array([0, -1, 0]),
                                 np.array([0, 1]), np.array([0.5, 1, 1]), "Positive point: (1, 2)"])
def test_bad_actions_raise_clear_errors(disc_segmenter, bad):
    env = make(disc_segmenter)
    env.reset(seed=0)
    with pytest.raises(InvalidAction):
        env.step(bad)


@pytest.mark.parametrize("kwargs", [{"max_clicks": 0}, {"obs_size": "big"}, {"start": "boxes"},
                                    {"render_mode": "ansi"}, {"dataset": "nope"}, {"segmenter": "nope"}])
def test_bad_kwargs_raise(kwargs):
    base = {"dataset": SMALL}
    base.update(kwargs)
    with pytest.raises((ValueError, KeyError, TypeError)):
        gym.make("HLMATEnv-v0", **base)


def test_pixel_bins_round_trip_when_image_fits(disc_segmenter):
    env = make(disc_segmenter, coord_bins=1000)
    env.reset(seed=0)
    u = env.unwrapped
    for _ in range(5):
        click = u.expert_click()
        _, _, _, _, _ = env.step(u.expert_action())
        assert u.clicks[-1] == click  # 160x120 <= 1000 bins: exact pixel


def test_start_states_and_refinement(disc_segmenter):
    env = make(disc_segmenter)
    _, info = env.reset(seed=0, options={"index": 0, "start": "box"})
    u = env.unwrapped
    assert u.mask.any() and 0 < info["iou"] < 1
    _, info = env.reset(seed=0, options={"index": 0, "start": "degraded"})
    assert 0 < info["iou"] < 1
    init = np.zeros(u.image.shape[:2], bool)
    init[10:20, 10:20] = True
    env.reset(options={"index": 1, "initial_mask": init})
    assert (u.mask == init).all()
    with pytest.raises(ValueError):
        env.reset(options={"index": 1, "initial_mask": init[:5]})
    with pytest.raises(ValueError):
        env.reset(options={"index": 99})


def test_undo_radius_deletes_opposite_clicks(disc_segmenter):
    env = make(disc_segmenter, undo_radius=5)
    env.reset(seed=0, options={"index": 0})
    u = env.unwrapped
    u.click(Click(50, 50, True))
    u.click(Click(80, 50, True))
    u.click(Click(52, 51, False))  # within 5 px of the first positive click
    assert u.clicks == [Click(80, 50, True), Click(52, 51, False)]


@pytest.mark.parametrize("segmenter", ["disc", "default"])
def test_snapshot_restore_is_exact(segmenter):
    env = make(_disc() if segmenter == "disc" else segmenter)
    env.reset(seed=0, options={"index": 3})
    u = env.unwrapped
    env.step(u.expert_action())
    state = u.get_state()
    a = [env.step(u.expert_action())[1:4] for _ in range(3)]
    mask_a = u.mask
    env.reset(options={"index": 1})  # another sample in between
    u.set_state(state)
    b = [env.step(u.expert_action())[1:4] for _ in range(3)]
    assert a == b and (u.mask == mask_a).all()


def test_render_overlay_and_markers(disc_segmenter):
    env = make(disc_segmenter, render_mode="rgb_array")
    env.reset(seed=0, options={"index": 0})
    u = env.unwrapped
    frame0 = env.render()
    assert frame0.shape == u.image.shape and (frame0 == u.image).all()
    u.click(Click(40, 40, True))
    frame = env.render()
    far = u.mask
    far[36:45, 36:45] = False  # away from the click marker
    expected = np.round(u.image[far] * 0.5 + np.array([0, 255, 0]) * 0.5)
    assert np.abs(frame[far].astype(int) - expected).max() <= 1
    assert tuple(frame[40, 40]) == (0, 200, 0)


def test_caption_charset_accepts_english():
    space = gym.make("HLMATEnv-v0", dataset=SMALL, segmenter=_disc()).observation_space["caption"]
    assert "the man's pants, left (blue) - 2nd from right; café" in space


def _disc():
    from tests.conftest import DiscSegmenter

    return DiscSegmenter()


def test_async_vector_env():
    envs = gym.make_vec("HLMATEnv-v0", num_envs=2, vectorization_mode="async",
                        dataset="synthetic:val", segmenter="default", max_clicks=3)
    try:
        obs, info = envs.reset(seed=0)
        assert obs["image"].shape[0] == 2 and len(obs["caption"]) == 2
        obs, r, term, trunc, info = envs.step(envs.action_space.sample())
        assert r.shape == (2,) and r.dtype == np.float64
    finally:
        envs.close()

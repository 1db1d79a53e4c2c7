"""Trajectory recording (SegAgent's rules through the env's public API), JSONL and SegAgent JSON round trips."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import hlmat_env  # noqa: F401
from hlmat_env.actions import Click
from hlmat_env.datasets import Sample
from hlmat_env.masks import decode_rle
from hlmat_env.trajectories import (START_STATES, EmptyTarget, Trajectory, TrajectoryError, from_segagent,
                                    iter_trajectories, read_jsonl, read_segagent, record_trajectory,
                                    to_segagent, write_jsonl, write_segagent)


@pytest.fixture
def env(disc_segmenter):
    disc_segmenter.radius = 4
    return gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=disc_segmenter, max_clicks=30)


def test_recording_follows_segagent_rules(env):
    t = record_trajectory(env, 3, seed=1, dataset_spec="synthetic:val", segmenter_name="disc")
    ious = [s.iou for s in t.clicks]
    assert len(ious) >= 3 and all(b > a for a, b in zip([t.start_iou] + ious, ious))  # strictly improving
    assert (t.episode_id, t.start, t.start_mask, t.start_iou) == (f"{t.sample_id}#empty", "empty", None, 0.0)
    # replay the clicks on a fresh env: same masks and IoUs, and each click is the robot user's
    u = env.unwrapped
    env.reset(options={"index": 3})
    for s in t.clicks:
        assert u.expert_click() == s.click
        _, _, _, _, info = u.click(s.click)
        assert info["iou"] == s.iou
        np.testing.assert_array_equal(decode_rle(s.mask), u.mask)
    assert (t.height, t.width) == u.image.shape[:2] and decode_rle(t.target).sum() > 0
    # the robot user's next click would not improve (or the budget / tau ended it)
    if ious[-1] < 0.98 and len(ious) < 20:
        before = info["iou"]
        nxt = u.expert_click()
        assert nxt is None or u.click(nxt)[4]["iou"] <= before


def test_tau_stop_and_max_clicks(env):
    t = record_trajectory(env, 3, tau_stop=0.3)
    assert t.clicks[-1].iou >= 0.3 and all(s.iou < 0.3 for s in t.clicks[:-1])
    assert len(record_trajectory(env, 3, max_clicks=2).clicks) == 2
    loose = record_trajectory(env, 3, strict_improvement=False, max_clicks=25)
    assert len(loose.clicks) >= len(record_trajectory(env, 3).clicks)


@pytest.mark.parametrize("start", [s for s in START_STATES if s != "empty"])
def test_extra_start_states_are_seeded(env, start):
    a = record_trajectory(env, 5, start=start, seed=11)
    b = record_trajectory(env, 5, start=start, seed=11)
    assert a == b and a.start == start and a.episode_id.endswith(f"#{start}")
    assert a.start_mask is not None and a.start_iou > 0
    assert decode_rle(a.start_mask).shape == (a.height, a.width)


def test_empty_target_is_an_error(disc_segmenter):
    img = np.zeros((20, 20, 3), np.uint8)
    env = gym.make("HLMATEnv-v0", dataset=[Sample(img, np.zeros((20, 20), np.int8), "", "blank")],
                   segmenter=disc_segmenter)
    with pytest.raises(EmptyTarget, match="blank"):
        record_trajectory(env, 0)


def _trajs(env):
    return [record_trajectory(env, i, start=s, seed=i, dataset_spec="synthetic:val")
            for i, s in [(0, "empty"), (1, "degraded"), (2, "clicks")]]


def test_jsonl_segagent_jsonl_round_trip(env, tmp_path):
    trajs = _trajs(env)
    write_jsonl(trajs, tmp_path / "a.jsonl")
    first = read_jsonl(tmp_path / "a.jsonl")
    assert first == trajs
    write_segagent(first, tmp_path / "seg.json")
    doc = json.loads((tmp_path / "seg.json").read_text())
    rec, t = doc["data"][0], trajs[0]
    assert rec["clicks_list"][0]["coor"] == [t.clicks[0].y, t.clicks[0].x]  # [row, col]
    assert rec["gt_ann"]["area"] == int(decode_rle(t.target).sum())
    assert rec["clicks_list"][-1]["iou"] == t.clicks[-1].iou
    back = read_segagent(tmp_path / "seg.json")
    assert back == trajs  # clicks, masks, IoUs and our extra fields survive
    write_jsonl(back, tmp_path / "b.jsonl")
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()
    assert list(iter_trajectories(tmp_path / "seg.json")) == trajs


def test_a_dagger_label_survives_both_formats(env, tmp_path):
    t = record_trajectory(env, 0, max_clicks=3, dataset_spec="synthetic:val")
    t.clicks[0].label = Click(3, 4, False)
    for back in (read_jsonl(write_jsonl([t], tmp_path / "t.jsonl"))[0], from_segagent(to_segagent([t]))[0]):
        assert back.clicks[0].label == Click(3, 4, False) and back.clicks[0].label_click == Click(3, 4, False)
        assert all(s.label is None and s.label_click == s.click for s in back.clicks[1:])
    clicks = json.loads(write_jsonl([t], tmp_path / "t.jsonl").read_text())["clicks"]
    assert "label" in clicks[0] and all("label" not in c for c in clicks[1:])  # absent unless set


def test_reads_segagent_records_without_our_block(env):
    t = _trajs(env)[0]
    doc = to_segagent([t])
    rec = doc["data"][0]
    del rec["hlmat"]
    rec["image_name"], rec["gt_ann"]["object_id"], rec["gt_ann"]["caption"] = 581857, 4, ["left dog", "dog"]
    (back,) = from_segagent(doc)
    assert back.sample_id == "581857-4" and back.caption == "left dog" and back.start == "empty"
    assert [s.click for s in back.clicks] == [s.click for s in t.clicks]
    assert [s.iou for s in back.clicks] == [s.iou for s in t.clicks]
    np.testing.assert_array_equal(back.mask_before(1), decode_rle(t.clicks[0].mask))


def test_bad_records_name_the_place(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"sample_id": "a", "height": 2, "width": 2, "target": {}, "clicks": []}\n{oops\n')
    with pytest.raises(TrajectoryError, match=r"x\.jsonl:2"):
        read_jsonl(p)
    p.write_text('{"sample_id": "a", "height": 2, "width": 2, "target": {}, "clicks": [{"x": 1}]}\n')
    with pytest.raises(TrajectoryError, match=r"x\.jsonl:1: bad click"):
        read_jsonl(p)
    with pytest.raises(TrajectoryError, match="missing"):
        Trajectory.from_json({"sample_id": "a"})
    with pytest.raises(TrajectoryError, match="not found"):
        list(iter_trajectories(tmp_path / "nope.jsonl"))
    assert Click(1, 2, True) == Trajectory.from_json(
        {"sample_id": "a", "height": 3, "width": 3, "target": {}, "clicks": [
            {"x": 1, "y": 2, "positive": True, "iou": 0.5, "mask": {}}]}).clicks[0].click

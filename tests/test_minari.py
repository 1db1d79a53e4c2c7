"""Minari export: recorded trajectories replayed in the env, written as a Minari dataset and read back by
``minari.load_dataset`` with the same observations (masks bit-exact), actions, rewards and end flags."""
from __future__ import annotations

import argparse
import importlib.util

import cv2
import gymnasium as gym
import numpy as np
import pytest

minari = pytest.importorskip("minari", reason="minari is not installed (pip install 'hlmat[minari]')")

import hlmat_env  # noqa: E402,F401
from hlmat_env.actions import encode_click  # noqa: E402
from hlmat_env.exports_minari import DEFAULT_DATASET_ID, export_minari, load_minari  # noqa: E402
from hlmat_env.masks import decode_rle  # noqa: E402
from hlmat_env.trajectories import TrajectoryError, record_trajectory, write_jsonl  # noqa: E402

SPEC = "synthetic:val"


@pytest.fixture(scope="module")
def trajs():
    env = gym.make("HLMATEnv-v0", dataset=SPEC, segmenter="default", max_clicks=21)
    out = [record_trajectory(env, i, start=s, seed=i, dataset_spec=SPEC, segmenter_name="default", max_clicks=5)
           for i, s in [(0, "empty"), (1, "degraded"), (2, "box"), (3, "clicks"), (5, "empty")]]
    assert sum(len(t.clicks) for t in out) >= 8
    return out


def _expected(t, max_clicks=20):
    """What the env gives for trajectory ``t``, collected here without the exporter."""
    env = gym.make("HLMATEnv-v0", dataset=SPEC, segmenter="default", max_clicks=max_clicks)
    opts = {"index": t.index}
    if t.start in ("empty", "box"):
        opts["start"] = t.start
    else:
        opts["initial_mask"] = decode_rle(t.start_mask)
    obs, _ = env.reset(seed=t.seed, options=opts)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    truncated = False
    for s in t.clicks:
        a = encode_click(s.click, t.width, t.height, 1000)
        obs, r, term, truncated, _ = env.step(a)
        observations.append(obs), actions.append(a), rewards.append(r), terms.append(term), truncs.append(truncated)
    if not truncated:
        obs, r, term, truncated, _ = env.step(np.array([2, 0, 0]))
        observations.append(obs), actions.append(np.array([2, 0, 0])), rewards.append(r)
        terms.append(term), truncs.append(truncated)
    return observations, np.array(actions), np.array(rewards), np.array(terms), np.array(truncs)


def _check_round_trip(ds, trajs):
    assert ds.total_episodes == len(trajs)
    assert ds.total_steps == sum(len(t.clicks) + 1 for t in trajs)
    assert ds.observation_space["mask"] == gym.spaces.Box(0, 255, (128, 128, 1), np.uint8)
    assert ds.action_space == gym.spaces.MultiDiscrete([3, 1000, 1000])
    for t, ep in zip(trajs, ds.iterate_episodes()):
        observations, actions, rewards, terms, truncs = _expected(t)
        for key in ("image", "mask"):
            got = ep.observations[key]
            assert got.dtype == np.uint8 and got.shape == (len(observations), *observations[0][key].shape)
            np.testing.assert_array_equal(got, np.stack([o[key] for o in observations]))  # lossless
        assert list(ep.observations["caption"]) == [o["caption"] for o in observations] == [t.caption] * len(
            observations)
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.rewards, rewards)  # bit-exact floats
        np.testing.assert_array_equal(ep.terminations, terms)
        np.testing.assert_array_equal(ep.truncations, truncs)
        assert ep.terminations[-1] and not ep.truncations.any()  # the demonstrator finished
        # the stored masks are the record's masks at observation size (nothing re-derived by the exporter)
        for k, s in enumerate(t.clicks):
            rec = cv2.resize(decode_rle(s.mask).astype(np.uint8) * 255, (128, 128), interpolation=cv2.INTER_NEAREST)
            np.testing.assert_array_equal(ep.observations["mask"][k + 1, ..., 0], rec)
        np.testing.assert_allclose(ep.infos["iou"], [t.start_iou] + [s.iou for s in t.clicks] + [t.clicks[-1].iou
                                                    if t.clicks else t.start_iou])
        np.testing.assert_allclose(ep.rewards.sum(), ep.infos["iou"][-1] - ep.infos["iou"][0], atol=1e-12)


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_round_trip(trajs, tmp_path, monkeypatch, data_format):
    if data_format == "arrow" and importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow is not installed")
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    assert export_minari(trajs, tmp_path, data_format=data_format) == len(trajs)
    assert (tmp_path / DEFAULT_DATASET_ID / "data").is_dir()
    _check_round_trip(load_minari(tmp_path), trajs)
    # the standard way: minari.load_dataset with the datasets root, and the path itself
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = minari.load_dataset(DEFAULT_DATASET_ID)
    _check_round_trip(ds, trajs)
    _check_round_trip(minari.MinariDataset(tmp_path / DEFAULT_DATASET_ID / "data"), trajs)
    assert ds.storage.metadata["jpeg_encoding"] is False and ds.storage.metadata["data_format"] == data_format
    meta = list(ds.storage.get_episode_metadata(range(len(trajs))))
    assert [m["episode_id"] for m in meta] == [t.episode_id for t in trajs]
    assert [m["recorded_start"] for m in meta] == ["empty", "degraded", "box", "clicks", "empty"]
    assert [m["options"]["start"] for m in meta] == ["empty", "mask", "box", "mask", "empty"]
    assert [m["seed"] for m in meta] == [t.seed for t in trajs]
    env = ds.recover_environment()  # the env spec travels with the data
    assert env.spec.kwargs["dataset"] == SPEC and env.spec.kwargs["segmenter"] == "default"
    env.close()


def test_budget_truncates_and_chunks(trajs, tmp_path):
    t = max(trajs, key=lambda t: len(t.clicks))
    n = len(t.clicks)
    assert export_minari([t, t], tmp_path, dataset_id="demo/budget-v0", max_clicks=n, chunk=1) == 2
    ds = load_minari(tmp_path, "demo/budget-v0")
    for ep in ds:
        assert len(ep) == n and ep.truncations[-1] and not ep.terminations.any()  # no finish past the budget
    with pytest.raises(TrajectoryError, match="more than the env's budget"):
        export_minari([t], tmp_path, dataset_id="demo/short-v0", max_clicks=n - 1)


def test_errors(trajs, tmp_path):
    export_minari(trajs[:1], tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        export_minari(trajs[:1], tmp_path)
    with pytest.raises(TrajectoryError, match="no trajectories"):
        export_minari([], tmp_path, dataset_id="demo/none-v0")
    orphan = type(trajs[0])(**{**trajs[0].__dict__, "dataset": ""})
    with pytest.raises(TrajectoryError, match="no dataset spec"):
        export_minari([orphan], tmp_path, dataset_id="demo/orphan-v0")
    t = next(t for t in trajs if t.clicks)
    with pytest.raises(TrajectoryError, match="no exact action"):
        export_minari([t], tmp_path, dataset_id="demo/bins-v0", coord_bins=7)


def test_command(trajs, tmp_path, capsys):
    from agents.cli import export as cmd

    write_jsonl(trajs, tmp_path / "demos" / "part-00000.jsonl")
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", "--in", str(tmp_path / "demos"), "--format", "minari", "--out",
                              str(tmp_path / "minari"), "--dataset-id", "hlmat/test-v1"])
    assert cmd.run(args) == 0
    assert "wrote 5 episodes" in capsys.readouterr().out
    _check_round_trip(load_minari(tmp_path / "minari", "hlmat/test-v1"), trajs)

"""StaR+: corrected rollouts keep only IoU-raising actions, in the demonstrations' format."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import hlmat_env  # noqa: F401
from agents.base import Agent, Decision
from agents.ppo.bc import generate_demos
from agents.baselines.random_agent import RandomAgent
from agents.star import bc_demos_from_trajectories, retrain, star_relabel
from hlmat_env.actions import encode_click
from hlmat_env.trajectories import read_jsonl, record_trajectory, write_jsonl
from hlmat_env.wrappers import sb3_wrap

ONE = "synthetic:train?size=1"
CFG = {"size": 32, "grid": 8, "finish": True, "clicks": True, "caption": True}


class SometimesGood(Agent):
    """Half the time the robot user's click, else a random click (so some actions lower the IoU)."""

    privileged = True  # half its clicks are the robot user's

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.random = RandomAgent(seed=1)

    def act(self, obs, env):
        if self.rng.random() < 0.5:
            return Decision(env.expert_action())
        if self.rng.random() < 0.1:
            h, w = env.mask.shape
            return Decision(encode_click(None, w, h, env.coord_bins))
        return self.random.act(obs, env)


def test_star_output_contains_no_iou_lowering_action(disc_segmenter, tmp_path):
    trajs, stats = star_relabel(SometimesGood(), "synthetic:train", range(6), segmenter=disc_segmenter,
                                max_clicks=8)
    assert stats.kept > 0 and stats.replaced > 0  # both kinds of step happened
    for t in trajs:
        prev = t.start_iou
        for step in t.clicks:
            assert step.iou > prev
            prev = step.iou
    path = write_jsonl(trajs, tmp_path / "star.jsonl")
    back = read_jsonl(path)
    assert [t.episode_id for t in back] == [t.episode_id for t in trajs]
    assert all(t.dataset == "synthetic:train" and t.index >= 0 for t in back)
    assert np.mean(stats.final_ious) > np.mean(stats.start_ious)


def test_converted_arrays_match_generate_demos(disc_segmenter):
    """The robot user's own trajectory converts to generate_demos' keys, dtypes and shapes; its first state (the
    same empty start and the same expert click for both) gives identical rows; soft labels sum to 1."""
    env = gym.make("HLMATEnv-v0", dataset=ONE, segmenter=disc_segmenter, max_clicks=3)
    ref = generate_demos(sb3_wrap(env, **CFG), 1, clicks_per_episode=3, explore=0.0, progress=False)
    traj = record_trajectory(env, 0, max_clicks=3, dataset_spec=ONE)
    got = bc_demos_from_trajectories([traj], CFG, max_clicks=3)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype and got[k].shape[1:] == ref[k].shape[1:], k
    for k in ("image", "caption", "action", "target", "target_map"):  # returns differ: ref's clicks are snapped
        np.testing.assert_array_equal(got[k][0], ref[k][0], err_msg=k)
    assert len(got["action"]) >= len(traj.clicks) >= 1
    np.testing.assert_allclose(got["target"].sum(1), 1.0, rtol=1e-5)
    assert all(got["target"][i, a] > 0 for i, a in enumerate(got["action"]))  # the label's cell is accepted


def test_finish_row_only_where_no_click_improved(disc_segmenter):
    env = gym.make("HLMATEnv-v0", dataset="synthetic:train", segmenter=disc_segmenter, max_clicks=20)
    trajs = [record_trajectory(env, i, max_clicks=20, dataset_spec="synthetic:train") for i in range(4)]
    got = bc_demos_from_trajectories(trajs, CFG, max_clicks=20)
    finish = 2 * CFG["grid"] ** 2
    ends = np.cumsum([len(t.clicks) + (len(t.clicks) < 20 and t.clicks[-1].iou < 0.98) for t in trajs]) - 1
    assert (got["action"] == finish).sum() >= 1 and set(np.flatnonzero(got["action"] == finish)) <= set(ends)
    np.testing.assert_array_equal(got["target"][got["action"] == finish, finish], 1.0)
    assert np.all(got["ret"][got["action"] == finish] == 0.0)
    no_finish = bc_demos_from_trajectories(trajs, {**CFG, "finish": False}, max_clicks=20)
    assert len(no_finish["action"]) == sum(len(t.clicks) for t in trajs)


def test_robot_labels_relabel_the_same_states(disc_segmenter, tmp_path):
    """labels="robot" executes exactly what StaR+ executes; a kept policy click then carries the robot user's click
    from the state before it (replayed here) as its label, and behaviour cloning and the SFT export imitate it."""
    from hlmat_env.exports import sft_steps

    star, s1 = star_relabel(SometimesGood(), "synthetic:train", range(4), segmenter=disc_segmenter, max_clicks=6)
    robot, s2 = star_relabel(SometimesGood(), "synthetic:train", range(4), segmenter=disc_segmenter, max_clicks=6,
                             labels="robot")
    assert (s1.kept, s1.replaced) == (s2.kept, s2.replaced) and s2.kept > 0
    env = gym.make("HLMATEnv-v0", dataset="synthetic:train", segmenter=disc_segmenter, max_clicks=6)
    u, relabelled = env.unwrapped, 0
    for a, b in zip(star, robot):
        assert [s.click for s in a.clicks] == [s.click for s in b.clicks] and all(s.label is None for s in a.clicks)
        env.reset(options={"index": b.index})
        for k, step in enumerate(b.clicks):
            if step.label is not None:
                relabelled += 1
                assert step.label == u.expert_click() != step.click
                snapshot = u.get_state()
                assert u.click(step.label)[-1]["iou"] > b.iou_before(k)  # the label raises the IoU too
                u.set_state(snapshot)
            u.click(step.click)
    assert relabelled > 0
    x, y = (bc_demos_from_trajectories(t, CFG, max_clicks=6) for t in (star, robot))
    np.testing.assert_array_equal(x["image"], y["image"])  # the same states ...
    assert not np.array_equal(x["action"], y["action"])  # ... other labels
    back = read_jsonl(write_jsonl(robot, tmp_path / "robot.jsonl"))
    assert [[s.label for s in t.clicks] for t in back] == [[s.label for s in t.clicks] for t in robot]
    answers = [r["answer"] for r in sft_steps(back, tmp_path / "sft", coords="qwen2")]
    assert answers != [r["answer"] for r in sft_steps(star, tmp_path / "sft2", coords="qwen2")]
    assert len(answers) == sum(len(t.clicks) for t in robot)


def test_bc_arrays_from_star_trajectories(disc_segmenter):
    trajs, _ = star_relabel(SometimesGood(), "synthetic:train", range(2), segmenter=disc_segmenter, max_clicks=4)
    cfg = {**CFG, "finish": False, "size": 32}
    demos = bc_demos_from_trajectories(trajs, cfg, max_clicks=4)
    n = sum(len(t.clicks) for t in trajs)
    assert demos["image"].shape == (n, 6, 32, 32) and demos["target"].shape == (n, 2 * 8 * 8)
    assert demos["action"].max() < 2 * 8 * 8 and len(demos["caption"]) == n and len(demos["target_map"]) == n


@pytest.mark.slow
def test_retrain_modes(disc_segmenter, tmp_path):
    """finetune starts from the policy's weights, bc from a fresh network (checked with a zero learning rate)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.ppo.policy import SpatialPolicy
    from agents.ppo.train import PPOConfig, save_model

    cfg = PPOConfig(size=32, grid=8, finish=True, width=8)
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset="synthetic:train", segmenter=disc_segmenter), **CFG)
    model = PPO(SpatialPolicy, DummyVecEnv([lambda: env]), n_steps=16, device="cpu", seed=0,
                policy_kwargs={"features_extractor_kwargs": {"width": 8}})
    base = save_model(model, tmp_path / "base" / "model", cfg)
    trajs, _ = star_relabel(SometimesGood(), "synthetic:train", range(2), segmenter=disc_segmenter, max_clicks=3)
    weights = {}
    for mode in ("finetune", "bc"):
        path = retrain(trajs, base, tmp_path / mode, mode=mode, epochs=1, lr=0.0, max_clicks=3, seed=1)
        weights[mode] = PPO.load(path, device="cpu").policy.state_dict()
    ref = model.policy.state_dict()
    assert all(torch.equal(weights["finetune"][k], v) for k, v in ref.items())
    assert not all(torch.equal(weights["bc"][k], v) for k, v in ref.items())


def test_star_command_reads_bc_demos_from_a_folder_and_refuses_another_wrapper(tmp_path):
    import json

    from agents.cli.star import _load_bc_demos
    from agents.ppo.agent import resolve_model

    folder = tmp_path / "demos"
    folder.mkdir()
    np.savez(folder / "demos.npz", action=np.zeros(2, np.int64))
    assert _load_bc_demos(folder, None)["action"].shape == (2,)  # no record: taken as it is
    shipped = json.loads(resolve_model("plain").with_suffix(".json").read_text())
    wrapper = {k: shipped[k] for k in ("size", "grid", "finish", "clicks", "caption")}
    (folder / "demos.json").write_text(json.dumps({"wrapper": {**wrapper, "caption_code": "multihot"}}))
    assert len(_load_bc_demos(folder / "demos.npz", "plain")["action"]) == 2
    (folder / "demos.json").write_text(json.dumps({"wrapper": {**wrapper, "caption_code": "hashed"}}))
    from hlmat_env.errors import HLMATError

    with pytest.raises(HLMATError, match="caption_code"):
        _load_bc_demos(folder, "plain")
    with pytest.raises(SystemExit, match="no demonstrations file"):
        _load_bc_demos(tmp_path / "missing.npz", None)


def test_star_command_with_robot_labels(tmp_path):
    """The command end to end (no retraining): the summary counts and the written files agree."""
    import json

    from agents.cli import main

    env = gym.make("HLMATEnv-v0", dataset=ONE, segmenter="default", max_clicks=3)
    write_jsonl([record_trajectory(env, 0, max_clicks=3, dataset_spec=ONE)], tmp_path / "demos" / "d.jsonl")
    out = tmp_path / "star"
    assert main(["star", "--agent", "random", "--dataset", ONE, "--demos", str(tmp_path / "demos"), "--out", str(out),
                 "--labels", "robot", "--max-clicks", "3", "--no-progress"]) == 0
    summary = json.loads((out / "star_stats.json").read_text())
    trajs = read_jsonl(out / "star.jsonl")
    assert summary["labels"] == "robot" and summary["episodes"] == len(trajs) == 1
    assert summary["kept_clicks_relabelled"] == sum(s.label is not None for s in trajs[0].clicks)
    assert summary["policy_clicks_kept"] + summary["replaced_by_robot_user"] == len(trajs[0].clicks)
    assert len(read_jsonl(out / "union" / "demos.jsonl")) == 1


@pytest.mark.slow
def test_star_round_for_an_mllm_policy(disc_segmenter, tmp_path):
    """The MLLM route: StaR+ rollouts of a (tiny, untrained) VLM agent -> the union exported for SFT -> one SFT
    epoch from the base model on it. The untrained model's unparsable answers are replaced by the robot user."""
    pytest.importorskip("transformers")
    from agents.base import make_agent
    from agents.mllm.sft import sft
    from agents.mllm.tiny_vlm import build_tiny_vlm
    from hlmat_env.exports import export_trl

    base = build_tiny_vlm(tmp_path / "base", "qwen2-vl")
    agent = make_agent(f"mllm:{base}", coords="qwen2", max_new_tokens=16)
    trajs, stats = star_relabel(agent, "synthetic:train", range(2), segmenter=disc_segmenter, max_clicks=2)
    assert stats.episodes == 2 and stats.replaced >= 1 and all(t.clicks for t in trajs)
    demos = [record_trajectory(gym.make("HLMATEnv-v0", dataset="synthetic:train", segmenter=disc_segmenter), i,
                               max_clicks=2, dataset_spec="synthetic:train") for i in range(2)]
    n = export_trl(demos + trajs, tmp_path / "union", coords="qwen2")
    assert n == sum(len(t.clicks) for t in demos + trajs)
    out = sft(tmp_path / "union", base, tmp_path / "sft", coords="qwen2", epochs=1, batch_size=n, lr=1e-3)
    assert make_agent(f"mllm:{out}").codec.name == "qwen2"

"""The step judge of ``ppo`` (agents/ppo/judge.py): its input carries no target, it trains and round-trips, and
the judged agent looks ahead through the view only (same decision whatever the target, state restored)."""
from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from agents.ppo import PPOAgent  # noqa: E402
from agents.ppo.judge import StepJudge, judge_input, load_judge, save_judge  # noqa: E402
from agents.ppo.judge_data import record_transitions  # noqa: E402
from agents.ppo.judge_train import train_judge, transition_stats  # noqa: E402
from agents.ppo.train import train  # noqa: E402
from agents.prm.model import PRMConfig, PRMNet  # noqa: E402
from agents.prm.train import save_prm  # noqa: E402
from agents.view import view_for  # noqa: E402
from hlmat_env.actions import ActionKind, Click  # noqa: E402
from hlmat_env.datasets.synthetic import SyntheticDataset  # noqa: E402
from tests.conftest import DiscSegmenter  # noqa: E402

torch.set_num_threads(1)
SMALL = PRMConfig(size=32, caption_dim=96, width=4, embed=16, crop=8, verifier_width=4)


def test_judge_input_planes_and_stats():
    image = np.zeros((40, 60, 3), np.uint8)
    before = np.zeros((40, 60), bool)
    before[10:20, 10:20] = True
    after = before.copy()
    after[10:20, 20:30] = True
    planes, stats = judge_input(image, before, after, [Click(25, 15, True)], size=16)
    assert planes.shape == (10, 16, 16) and planes.dtype == np.uint8
    assert planes[5].sum() > 0 and planes[6].sum() == 0  # pixels added, nothing removed
    assert planes[7].max() == 255 and planes[8].max() == 0 and planes[9].max() == 255  # one positive click, latest
    assert stats[2] == pytest.approx(100 / 2400) and stats[3] == 0 and stats[4] == 1.0


def test_judge_learns_a_separable_rule_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 160
    planes = rng.integers(0, 50, (n, 10, 16, 16)).astype(np.uint8)
    delta = np.where(rng.random(n) < 0.5, 0.1, -0.1).astype(np.float32)
    planes[delta > 0, 5] = 255  # improving steps add pixels, the others remove them
    planes[delta < 0, 6] = 255
    data = {"planes": planes, "stats": np.zeros((n, 6), np.float32), "delta": delta}
    judge, metrics = train_judge(data, epochs=10, batch_size=16, width=8, lr=5e-3, val_frac=0.25,
                                  progress=False)
    assert metrics["accuracy"] > 0.9 and metrics["val"] == 40
    path = save_judge(judge, tmp_path / "judge.pt", {"metrics": metrics})
    again = load_judge(path)
    np.testing.assert_allclose(again.prob(planes[:5], data["stats"][:5]), judge.prob(planes[:5], data["stats"][:5]))


@pytest.fixture(scope="module")
def judged_model(tmp_path_factory):
    """A tiny grounded policy (behaviour cloning only) with a random judge named in its settings."""
    tmp = tmp_path_factory.mktemp("judged")
    prm = save_prm(PRMNet(SMALL), tmp / "prm.pt")
    path = train(SyntheticDataset("train", size=6), DiscSegmenter(), tmp / "run", timesteps=0, subproc=False,
                 size=32, grid=8, width=8, progress=False, trunk=str(prm), max_clicks=3)
    torch.manual_seed(0)
    save_judge(StepJudge(8), tmp / "run" / "judge.pt")
    cfg = json.loads(path.with_suffix(".json").read_text())
    cfg.update(judge="judge.pt", judge_candidates=3, judge_threshold=0.0)  # threshold 0: always click
    path.with_suffix(".json").write_text(json.dumps(cfg))
    return path


def _state(target_shift: int = 0):
    env = gym.make("HLMATEnv-v0", dataset=SyntheticDataset("val", size=3), segmenter=DiscSegmenter())
    obs, _ = env.reset(seed=0, options={"index": 1})
    u = env.unwrapped
    obs, *_ = env.step(u.expert_action())
    if target_shift:  # another target: the judged agent must not notice
        u._sample.target = np.roll(u._sample.target, target_shift, axis=1)
    return env, obs


def test_judged_agent_never_reads_the_target_and_restores_the_state(judged_model):
    decisions = []
    for shift in (0, 17):
        env, obs = _state(shift)
        agent = PPOAgent(judged_model)
        assert agent.judge is not None
        view = view_for(agent, env)
        agent.reset(view)
        clicks, mask = env.unwrapped.clicks, env.unwrapped.mask.copy()
        decisions.append(agent.act(obs, view).action)
        assert env.unwrapped.clicks == clicks and np.array_equal(env.unwrapped.mask, mask)  # look-ahead undone
    np.testing.assert_array_equal(decisions[0], decisions[1])


def test_judge_threshold_above_one_finishes_and_use_judge_false_clicks(judged_model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(judged_model.parent, folder)
    cfg = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**cfg, "judge_threshold": 1.01}))
    env, obs = _state()
    strict = PPOAgent(folder)
    view = view_for(strict, env)
    assert int(strict.act(obs, view).action[0]) == ActionKind.FINISH
    plain = PPOAgent(folder, use_judge=False)
    assert plain.judge is None and int(plain.act(obs, view).action[0]) != ActionKind.FINISH


def test_record_transitions_labels_clicks_with_the_iou_change(judged_model):
    data = record_transitions(SyntheticDataset("val", size=3), [0, 1, 2], proposer=PPOAgent(judged_model),
                              size=16, max_steps=2, box_frac=0.5, segmenter=DiscSegmenter(),
                              progress=False)
    n = len(data["delta"])
    assert n >= 3 and data["planes"].shape == (n, 10, 16, 16)
    assert np.all(np.abs(data["delta"]) <= 1) and np.all((data["iou"] >= 0) & (data["iou"] <= 1))
    rows = transition_stats(data)
    assert sum(r["n"] for r in rows) == n and all(0 <= r["raised"] <= 1 for r in rows)


def test_shipped_ppo_carries_its_judge_and_ppo_synthetic_is_the_previous_policy():
    from agents.base import make_agent

    shipped, previous = make_agent("ppo"), make_agent("ppo:synthetic")
    assert shipped.judge is not None and shipped.cfg["judge"] == "ppo_grounded.judge.pt"
    assert previous.judge is None and previous.path == shipped.path
    assert 0 < shipped.judge_threshold <= 1 and shipped.judge_candidates >= 1

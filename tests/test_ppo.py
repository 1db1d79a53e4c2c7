"""The PPO baseline: network shapes, BC learns the demonstrations, end-to-end train/save/load/benchmark, resume."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from agents.base import make_agent  # noqa: E402
from agents.tools.benchmark import benchmark  # noqa: E402
from agents.ppo import PPOAgent, resolve_model  # noqa: E402
from agents.ppo.agent import greedy_action  # noqa: E402
from agents.ppo.bc import flip_batch, generate_demos, soft_target  # noqa: E402
from agents.ppo.policy import ClickNet  # noqa: E402
from agents.ppo.train import train  # noqa: E402
from agents.view import EpisodeView
from hlmat_env.actions import ActionKind, Click  # noqa: E402
from hlmat_env.datasets.synthetic import SyntheticDataset  # noqa: E402
from hlmat_env.errors import CheckpointError, HLMATError  # noqa: E402
from hlmat_env.masks import coverage_map  # noqa: E402
from hlmat_env.wrappers import sb3_wrap  # noqa: E402
from tests.conftest import DiscSegmenter  # noqa: E402

torch.set_num_threads(1)
TRAIN = SyntheticDataset("train", size=8)
VAL = SyntheticDataset("val", size=3)


def test_clicknet_shapes():
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()), size=40, grid=8, finish=True)
    net = ClickNet(env.observation_space, grid=8, finish=True, value_dim=16)
    obs = {"image": torch.rand(2, 6, 40, 40), "caption": torch.rand(2, env.observation_space["caption"].shape[0])}
    assert net(obs).shape == (2, 2 * 64 + 1 + 16) == (2, net.features_dim)


def test_demos_follow_the_expert():
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter(), max_clicks=3), size=40, grid=8)
    d = generate_demos(env, 2, explore=0.0, progress=False)
    assert d["image"].shape[1:] == (6, 40, 40) and d["image"].dtype == np.uint8
    assert len(d["action"]) == len(d["ret"]) == len(d["caption"]) <= 6
    assert (d["action"] < 128).all() and d["action"][0] < 64  # the first expert click is positive
    assert d["target"].shape == (len(d["action"]), 128) and np.allclose(d["target"].sum(1), 1.0)


def test_demos_label_finish_exactly_where_the_expert_click_stops_helping():
    """DiscSegmenter paints radius-6 discs, so on a large target the expert's clicks keep helping for a while and
    then stop; with finish on, every finish label must be a state whose expert click did not raise the IoU."""
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter(), max_clicks=12), size=40,
                   grid=8, finish=True)
    d = generate_demos(env, 6, explore=0.0, progress=False)
    fin = d["action"] == 128
    assert fin.any() and (~fin).any()
    assert np.array_equal(d["target"][fin], np.eye(129, dtype=np.float32)[[128] * fin.sum()])
    assert (d["reward"][fin] <= 0).all() and (d["reward"][~fin] > 0).all()  # explore=0: the expert's step
    assert d["target_map"].shape == (len(d["action"]), 40, 40) and d["target_map"].dtype == np.uint8


def test_target_map_is_the_area_fraction_and_flips_with_the_image():
    truth = np.zeros((20, 40), np.int8)
    truth[:, :10] = 1
    truth[0, 20] = -1  # ignore counts as background
    m = coverage_map(truth, 8)
    assert m.shape == (8, 8) and (m[:, :2] == 255).all() and (m[:, 2:] == 0).all()
    batch = {"image": torch.arange(2 * 6 * 8 * 8, dtype=torch.uint8).reshape(2, 6, 8, 8),
             "target_map": torch.as_tensor(np.stack([m, m]))}
    flipped, _ = flip_batch(batch, torch.zeros(2, 2 * 16), 4, "x")
    assert torch.equal(flipped["target_map"], batch["target_map"].flip(-1))
    assert torch.equal(flipped["image"], batch["image"].flip(-1))


def test_soft_target_covers_the_object():
    truth = np.zeros((40, 40), np.int8)
    truth[8:24, 16:32] = 1  # a square over grid cells 2..5 x 4..7 of an 8x8 grid (5 px cells)
    pred = np.zeros((40, 40), bool)
    t = soft_target(truth, pred, [], Click(23, 15, True), 8, 128, label=3 * 8 + 4)
    cells = np.flatnonzero(t)
    assert t.sum() == pytest.approx(1.0) and (cells < 64).all()  # positive clicks only
    assert all(2 <= c // 8 <= 4 and 3 <= c % 8 <= 6 for c in cells) and len(cells) >= 2  # inside the square
    pred[8:24, 16:32] = True
    pred[30:38, 2:10] = True  # a false positive blob: the label moves to negative clicks on it
    t = soft_target(truth, pred, [], Click(5, 33, False), 8, 128, label=64 + 6 * 8 + 1)
    assert (np.flatnonzero(t) >= 64).all() and t[64 + 6 * 8 + 1] > 0


@pytest.mark.slow
def test_train_save_load_benchmark_resume(tmp_path):
    out = tmp_path / "run"
    kw = dict(timesteps=32, bc_demos=tmp_path / "demos", bc_episodes=3, bc_clicks=2, bc_epochs=2, subproc=False,
              n_steps=16, batch_size=16, n_epochs=1, max_clicks=3, size=32, grid=8, width=8, progress=False,
              checkpoint_every=16)
    path = train(TRAIN, DiscSegmenter(), out, **kw)
    assert path == out / "model.zip" and (out / "bc_model.zip").exists() and (tmp_path / "demos/demos.npz").exists()
    assert json.loads((out / "model.json").read_text())["grid"] == 8
    assert list((out / "checkpoints").glob("ppo_*_steps.zip")) and list(out.glob("events.out.tfevents*"))
    assert (out / "training_curve.png").exists()
    res = benchmark([f"ppo:{out}", f"ppo:{out / 'bc_model.zip'}"], VAL, DiscSegmenter(), max_clicks=3,
                    progress=False)
    for m in res.metrics.values():
        assert m["invalid_rate"] == 0 and 0 <= m["miou@3"] <= 1
    for ep in res.episodes[f"ppo:{out}"]:  # never the same click twice
        assert len(set(ep.clicks)) == len(ep.clicks)
    train(TRAIN, DiscSegmenter(), out, **{**kw, "timesteps": 16, "resume": True})
    assert any(out.glob("resume_*/progress.csv"))


def test_staged_training_first_click_states_and_init_from(tmp_path):
    kw = dict(timesteps=0, subproc=False, size=32, grid=8, width=8, max_clicks=3, progress=False)
    first = train(TRAIN, DiscSegmenter(), tmp_path / "a", bc_demos=tmp_path / "demos", bc_episodes=2, bc_clicks=2,
                  bc_first_clicks=3, bc_epochs=1, **kw)
    with np.load(tmp_path / "demos/demos.npz") as d:
        no_return = np.isnan(d["ret"])
        assert no_return.sum() == 3 and len(d["ret"]) >= 5  # the first-click-only states have no return
        assert (d["action"][no_return] < 64).all()  # ... and their label is the first (positive) click
    second = train(TRAIN, DiscSegmenter(), tmp_path / "b", init_from=first, **kw)  # no BC: weights as loaded
    a, b = (PPOAgent(p).model.policy.state_dict() for p in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the recording is reused by a later stage (other counts) but not with another segmenter version
    train(TRAIN, DiscSegmenter(), tmp_path / "c", bc_demos=tmp_path / "demos", bc_episodes=9, bc_epochs=1, **kw)
    record = tmp_path / "demos/demos.json"
    settings = json.loads(record.read_text())
    assert settings["segmenter_version"] and settings["first_click_episodes"] == 3
    record.write_text(json.dumps({**settings, "segmenter_version": "0ld"}))
    with pytest.raises(HLMATError, match="segmenter_version"):
        train(TRAIN, DiscSegmenter(), tmp_path / "d", bc_demos=tmp_path / "demos", bc_epochs=1, **kw)


def test_agent_sampling_and_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_model(tmp_path / "nothing")
    train(TRAIN, DiscSegmenter(), tmp_path, timesteps=0, subproc=False, size=40, grid=8, max_clicks=2,
          finish=False, progress=False)
    agent = make_agent(f"ppo:{tmp_path}")
    assert isinstance(agent, PPOAgent)
    env = gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter())
    obs, _ = env.reset(seed=0)
    agent.reset(EpisodeView(env))
    ds = agent.sample(obs, EpisodeView(env), 4, np.random.default_rng(0))
    assert len(ds) == 4 and all(d.valid and d.action.shape == (3,) for d in ds)
    p = agent.probabilities(obs, EpisodeView(env))
    assert p.shape == (128,) and p.sum() == pytest.approx(1.0)
    state = env.unwrapped.get_state()
    first = agent.act(obs, EpisodeView(env))
    assert first.valid
    obs2, *_ = env.step(first.action)
    assert agent.probabilities(obs2, EpisodeView(env))[int(p.argmax())] == 0  # clicks in env.clicks are not repeated
    env.unwrapped.set_state(state)  # a restored snapshot (tree search) gets the same decision: no agent memory
    np.testing.assert_array_equal(agent.probabilities(obs, EpisodeView(env)), p)
    np.testing.assert_array_equal(agent.act(obs, EpisodeView(env)).action, first.action)


def test_greedy_action_finishes_only_when_finishing_beats_clicking():
    spread = np.full(9, 0.6 / 8)
    spread[-1] = 0.4  # finish is the single most likely action, but clicking (0.6 in all) is more likely
    assert greedy_action(spread, finish=True) < 8
    spread[:-1], spread[-1] = 0.45 / 8, 0.55
    assert greedy_action(spread, finish=True) == 8
    assert greedy_action(np.array([0.1, 0.7, 0.2]), finish=False) == 1


def test_no_finish_while_the_mask_is_empty():
    """An empty mask scores IoU 0 on every sample (each has a target), so the agent does not finish there; it may
    once a mask exists (after a click, or from a non-empty start)."""
    agent = make_agent("ppo", deterministic=False)
    assert agent.cfg["finish"]
    env = gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter(), max_clicks=3)
    u = env.unwrapped
    obs, _ = env.reset(seed=0, options={"index": 0})
    assert not u.mask.any() and agent.probabilities(obs, u)[-1] == 0.0
    assert all(d.action[0] != ActionKind.FINISH for d in agent.sample(obs, EpisodeView(u), 64, np.random.default_rng(0)))
    obs, *_ = u.click(u.expert_click())
    assert u.mask.any() and agent.probabilities(obs, u)[-1] > 0.0
    obs, _ = env.reset(seed=0, options={"index": 0, "start": "degraded"})
    assert u.mask.any() and agent.probabilities(obs, u)[-1] > 0.0


def test_shipped_models_load_and_ppo_without_a_path_is_the_grounded_one():
    assert resolve_model(None) == resolve_model("grounded") and resolve_model(None).is_file()
    assert resolve_model("plain").name == "ppo_synthetic.zip"
    from agents.ppo.grounded import GroundedClickNet
    from agents.ppo.policy import ClickNet

    assert isinstance(make_agent("ppo").model.policy.features_extractor, GroundedClickNet)
    assert isinstance(make_agent("ppo:plain").model.policy.features_extractor, ClickNet)


def test_shipped_grounded_model_loads_and_acts_with_four_flips():
    agent = make_agent("ppo:grounded")
    assert resolve_model("grounded").name == "ppo_grounded.zip" and agent.model.policy.features_extractor.flips == 4
    env = gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter(), max_clicks=2)
    obs, _ = env.reset(seed=0, options={"index": 0})
    agent.reset(EpisodeView(env))
    assert agent.act(obs, EpisodeView(env)).valid
    with pytest.raises(ValueError, match="no PRM trunk"):
        PPOAgent("plain", trunk_flips=2)


@pytest.mark.slow
def test_bc_fits_through_the_inference_path():
    """BC must train the very path PPOAgent acts with (SB3 scales the image once); without the caption only the
    image tells the states apart, so fitting them proves the image reaches the trained network."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.ppo.bc import behaviour_clone
    from agents.ppo.policy import SpatialPolicy

    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=TRAIN, segmenter=DiscSegmenter(), max_clicks=2), size=32,
                   grid=8, caption=False)
    d = generate_demos(env, 6, clicks_per_episode=1, explore=0.0, progress=False)
    model = PPO(SpatialPolicy, DummyVecEnv([lambda: env]), n_steps=16, device="cpu", seed=0,
                policy_kwargs={"features_extractor_kwargs": {"grid": 8, "width": 16}})
    behaviour_clone(model.policy, d, epochs=60, batch_size=8, lr=3e-3, augment=False, progress=False)
    with torch.no_grad():
        p = model.policy.get_distribution(model.policy.obs_to_tensor({"image": d["image"]})[0]).distribution.probs
    hit = np.take_along_axis(d["target"], p.argmax(1, keepdim=True).numpy(), 1) > 0
    assert hit.mean() >= 5 / 6

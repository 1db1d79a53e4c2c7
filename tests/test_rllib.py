"""agents.rllib: the RLlib env creator, the RLModule on real observations, and PPO with 2 env runners."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.rllib import env_config, make_env
from hlmat_env.wrappers import cell_click

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": "synthetic:val", "size": 32, "grid": 8, "env_kwargs": {"max_clicks": 4}}


@pytest.fixture
def rllib():
    """ray.rllib, or skip with the reason (CI installs it with the test extras)."""
    return pytest.importorskip("ray.rllib", reason="ray.rllib does not import: pip install -e '.[rllib]'")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance (2 CPUs) for this file's tests that start env runners."""
    pytest.importorskip("ray.rllib", reason="ray.rllib does not import: pip install -e '.[rllib]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _observations(env: gym.Env, n: int) -> list[dict]:
    """``n`` real observations: resets and a few clicks on different scenes."""
    out = []
    for i in range(n):
        obs, _ = env.reset(seed=i, options={"index": i})
        for _ in range(i % 3):
            obs, *_ = env.step(int(env.action_space.sample()))
        out.append(obs)
    return out


def _module(env: gym.Env, rllib, **model_config):
    from agents.rllib.module import ClickCNNModule

    return ClickCNNModule(observation_space=env.observation_space, action_space=env.action_space,
                          model_config=model_config)


def _batch(observations: list[dict]):
    import torch
    from ray.rllib.core.columns import Columns

    keys = observations[0]
    return {Columns.OBS: {k: torch.as_tensor(np.stack([o[k] for o in observations])) for k in keys}}


def test_make_env_spaces_and_caption_options():
    env = make_env(TINY)
    assert env.action_space == gym.spaces.Discrete(2 * 8**2 + 1)
    image = env.observation_space["image"]
    assert image.shape == (6, 32, 32) and image.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["caption"].sum() > 0  # the description's words
    no_caption = make_env({**TINY, "caption": "none", "clicks": False})
    assert set(no_caption.observation_space.spaces) == {"image"}
    assert no_caption.observation_space["image"].shape == (4, 32, 32)


def test_env_config_refuses_bad_values():
    with pytest.raises(ValueError, match="unknown RLlib env config keys"):
        env_config(datset="synthetic:val")
    with pytest.raises(ValueError, match="caption"):
        env_config(caption="bert")
    with pytest.raises(ValueError, match="size"):
        env_config(size=30)


def test_module_gives_valid_action_distributions_and_values_on_real_observations(rllib):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical

    env = make_env(TINY)
    module = _module(env, rllib, width=8)
    observations = _observations(env, 5)
    batch = _batch(observations)
    logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (5, env.action_space.n) and torch.isfinite(logits).all()
    dist = TorchCategorical.from_logits(logits)
    probs = torch.softmax(logits, -1)
    assert torch.allclose(probs.sum(-1), torch.ones(5)) and (probs > 0).all()
    # the finish action is a real option, not an afterthought: same order of probability as a click
    assert (probs[:, -1] > 0.1 / env.action_space.n).all()
    actions = dist.sample()
    assert all(env.action_space.contains(int(a)) for a in actions)
    env.reset(seed=0, options={"index": 0})
    env.step(int(actions[0]))  # the env takes the module's action
    out = module.forward_train(batch)  # what the learner runs: same logits, plus the embeddings
    assert torch.allclose(out[Columns.ACTION_DIST_INPUTS], logits)
    values = module.compute_values(batch, out[Columns.EMBEDDINGS])
    assert values.shape == (5,) and torch.isfinite(values).all()
    assert torch.allclose(module.compute_values(batch), values)
    # PPO's loss flows into every head: value head and policy (click and finish) heads
    train_dist = TorchCategorical.from_logits(out[Columns.ACTION_DIST_INPUTS])
    (train_dist.logp(actions).sum() + values.sum()).backward()
    for layer in (module.click_head, module.finish_head, module.value_head[-1], module.stem):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_caption_reaches_the_logits_and_can_be_dropped(rllib):
    import torch
    from ray.rllib.core.columns import Columns

    env = make_env(TINY)
    module = _module(env, rllib, width=8)
    torch.manual_seed(0)
    for film in (module.film2, module.film3, module.film4, module.film5):  # FiLM starts as identity
        torch.nn.init.normal_(film.linear.weight, std=0.5)
    obs = _observations(env, 1)[0]
    other = {**obs, "caption": np.roll(obs["caption"], 3)}
    logits = module.forward_inference(_batch([obs, other]))[Columns.ACTION_DIST_INPUTS]
    assert not torch.allclose(logits[0], logits[1])
    plain = make_env({**TINY, "caption": "none"})
    dropped = _module(plain, rllib, width=8)
    assert dropped.caption_dim == 0
    out = dropped.forward_inference(_batch(_observations(plain, 2)))[Columns.ACTION_DIST_INPUTS]
    assert out.shape == (2, plain.action_space.n)


def test_click_logits_are_in_coarse_clicks_order(rllib):
    """Positive logit of grid cell (row, col) at ``row * grid + col``, negative ones after, finish last: the
    order in which CoarseClicks maps actions to clicks."""
    import torch

    env = make_env(TINY)
    module = _module(env, rllib, width=8)
    grid, side = 8, 8  # the S/4 feature map of a 32-pixel observation is 8 x 8
    with torch.no_grad():
        module.click_head.weight.zero_()
        module.click_head.bias.zero_()
        module.click_head.weight[0, 0] = 1.0   # positive map = feature channel 0
        module.click_head.weight[1, 1] = 1.0   # negative map = feature channel 1
    maps = torch.zeros(1, module.click_head.in_channels, side, side)
    maps[0, 0, 2, 5] = 1.0   # row 2, column 5
    maps[0, 1, 6, 1] = 1.0   # row 6, column 1
    logits = module._logits(maps, torch.zeros(1, module.finish_head.in_features))[0]
    pos, neg = int(torch.argmax(logits[: grid**2])), int(torch.argmax(logits[grid**2: 2 * grid**2]))
    assert cell_click(pos, grid, 320, 320) == cell_click(2 * grid + 5, grid, 320, 320)
    assert (cell_click(pos, grid, 320, 320).x, cell_click(pos, grid, 320, 320).y) == (220, 100)
    assert cell_click(grid**2 + neg, grid, 320, 320) == cell_click(grid**2 + 6 * grid + 1, grid, 320, 320)
    assert logits.shape == (2 * grid**2 + 1,)


def test_module_refuses_other_action_spaces(rllib):
    from agents.rllib.module import grid_of

    assert grid_of(gym.spaces.Discrete(2 * 16**2 + 1)) == 16
    for bad in (gym.spaces.Discrete(10), gym.spaces.MultiDiscrete([3, 10, 10])):
        with pytest.raises(ValueError, match="Discrete"):
            grid_of(bad)


@pytest.mark.slow
def test_ppo_with_two_env_runners_trains_the_module(ray_session, tmp_path):
    """The example, tiny: 2 iterations of PPO with 2 remote env runners (one torch thread each)."""
    spec = importlib.util.spec_from_file_location("rllib_ppo_example", ROOT / "examples" / "rllib_ppo.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--dataset", "synthetic:train", "--env-runners", "2", "--iterations", "2",
                           "--batch", "64", "--minibatch", "32", "--epochs", "1", "--size", "32",
                           "--grid", "8",
                           "--max-clicks", "4", "--eval-episodes", "2", "--out", str(tmp_path / "ckpt")])
    assert result["num_env_runners"] == 2
    assert [h["env_steps"] for h in result["history"]] == [64, 128]
    assert result["weight_change"] > 0 and result["runners_synced"]  # learnt, and the runners got the weights
    for h in result["history"]:
        assert all(math.isfinite(h[k]) for k in ("policy_loss", "vf_loss", "entropy", "return_mean"))
    assert 0.0 <= result["eval_iou"] <= 1.0
    assert (tmp_path / "ckpt").is_dir() and any((tmp_path / "ckpt").iterdir())  # an RLlib checkpoint


def test_bench_env_module_policy_in_one_env_and_not_in_vector_envs(rllib):
    from agents.tools.env_speed import MODULE_MODES, measure_env_speed

    rows = measure_env_speed(["synthetic:val"], ["module"], ["single", "sync"], num_envs=2, steps=6, warmup=0,
                             progress=False, env_kwargs={"max_clicks": 3})
    single, sync = rows
    assert single["status"] == "ok" and single["env_steps"] == 6 and single["steps_per_s"] > 0
    assert 0.0 <= single["mean_iou"] <= 1.0
    assert sync["status"] == f"not run: {MODULE_MODES}"


@pytest.mark.slow
def test_bench_env_rllib_rows_sample_with_the_module_in_two_runners(ray_session):
    from agents.tools.env_speed import measure_env_speed

    rows = measure_env_speed(["synthetic:val"], ["module"], ["rllib"], num_envs=2, steps=8, warmup=2,
                             progress=False, env_kwargs={"max_clicks": 3})
    one, two = rows
    assert [r["status"] for r in rows] == ["ok", "ok"] and (one["num_envs"], two["num_envs"]) == (1, 2)
    assert one["env_steps"] == 8 and two["env_steps"] == 8  # 4 per runner
    assert two["vs_one_runner"] == pytest.approx(two["steps_per_s"] / one["steps_per_s"])
    assert one["cores"] is not None and one["cores"] > 0 and 0.0 <= two["mean_iou"] <= 1.0

"""PPO with the PRM as a learned value head (agents.ppo.heads): one network, three heads with the stated shapes;
the PRM head's loss is the IoU regression on labels made from the env's rewards; a PPO update changes the
weights; the separate-critic layout starts from a shared policy's weights and still loads as ``ppo:PATH``."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.preprocessing import preprocess_obs  # noqa: E402

from agents.ppo import PPOAgent  # noqa: E402
from agents.ppo.grounded import GroundedClickNet, prm_head_modules  # noqa: E402
from agents.ppo.heads import PRMCriticPPO, SceneCache, prm_estimate, prm_loss, rollout_iou  # noqa: E402
from agents.ppo.train import PPOConfig, make_env, train  # noqa: E402
from agents.prm.model import PRMConfig, PRMNet  # noqa: E402
from agents.prm.train import save_prm  # noqa: E402
from agents.tools.benchmark import benchmark  # noqa: E402
from hlmat_env.datasets.synthetic import SyntheticDataset  # noqa: E402
from tests.conftest import DiscSegmenter  # noqa: E402

torch.set_num_threads(1)
TRAIN = SyntheticDataset("train", size=6)
VAL = SyntheticDataset("val", size=2)
SMALL = PRMConfig(size=32, caption_dim=96, width=4, embed=16, crop=8, verifier_width=4)
GRID = 8


@pytest.fixture(scope="module")
def prm_path(tmp_path_factory):
    torch.manual_seed(0)
    prm = PRMNet(SMALL)
    for p in prm.parameters():
        p.data.normal_(0, 0.1)
    return str(save_prm(prm, tmp_path_factory.mktemp("prm") / "prm.pt"))


def _model(prm_path, critic="shared", prm_coef=1.0, **over):
    cfg = PPOConfig(size=32, grid=GRID, width=8, max_clicks=3, n_envs=1, n_steps=16, batch_size=8, n_epochs=1,
                    trunk=prm_path, critic=critic, prm_coef=prm_coef, learning_rate=1e-3, target_kl=None, **over)
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.ppo.policy import SpatialPolicy

    venv = DummyVecEnv([lambda: make_env(TRAIN, DiscSegmenter(), cfg)])
    return PRMCriticPPO(SpatialPolicy, venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                        learning_rate=cfg.learning_rate, target_kl=None, seed=0, prm_coef=cfg.prm_coef,
                        policy_kwargs=cfg.policy_kwargs(), device="cpu")


def _obs(model, n=3):
    obs = {k: torch.as_tensor(np.stack([s.sample() for _ in range(n)]))
           for k, s in model.observation_space.spaces.items()}
    return preprocess_obs(obs, model.observation_space, normalize_images=True)


def test_three_heads_on_one_trunk_have_the_stated_shapes(prm_path):
    model = _model(prm_path)
    policy, fe = model.policy, model.policy.features_extractor
    assert isinstance(fe, GroundedClickNet) and fe.prm_head and policy.share_features_extractor
    obs = _obs(model)
    with torch.no_grad():
        features = fe(obs)
        latent_pi, latent_vf = policy.mlp_extractor(features)
        logits, value, est = policy.action_net(latent_pi), policy.value_net(latent_vf), prm_estimate(policy, obs)
    assert features.shape == (3, 2 * GRID**2 + 1 + fe.value_dim)
    assert logits.shape == (3, 2 * GRID**2 + 1)  # positive and negative click maps, finish
    assert value.shape == (3, 1) and est.shape == (3,) and bool(((est >= 0) & (est <= 1)).all())
    # the grounding is frozen, the PRM head (the trunk's IoU verifier) is trained
    head = {id(p) for m in prm_head_modules(fe.trunk) for p in m.parameters()}
    for p in fe.trunk.parameters():
        assert p.requires_grad == (id(p) in head)


def test_prm_head_loss_is_the_iou_regression_and_reaches_only_trainable_weights(prm_path):
    model = _model(prm_path)
    policy = model.policy
    obs, iou = _obs(model), torch.tensor([0.0, 0.5, 1.0])
    loss = prm_loss(policy, obs, iou)
    with torch.no_grad():
        est = prm_estimate(policy, obs)
    assert torch.isclose(loss, ((est - iou) ** 2).mean())
    loss.backward()
    fe = policy.features_extractor
    assert fe.trunk.correction[2].weight.grad is not None and fe.trunk.correction[2].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in fe.trunk.down.parameters())  # the grounding gets no gradient


def test_rollout_iou_is_the_running_sum_of_rewards_reset_at_episode_starts():
    rewards = np.array([[0.5, 0.1], [0.2, 0.1], [-0.1, 0.3], [0.4, 0.0]])
    starts = np.array([[1, 0], [0, 0], [1, 0], [0, 1]])
    labels, carry = rollout_iou(rewards, starts, carry=np.array([0.0, 0.6]))
    np.testing.assert_allclose(labels, [[0.0, 0.6], [0.5, 0.7], [0.0, 0.8], [-0.1, 0.0]], atol=1e-6)
    np.testing.assert_allclose(carry, [0.3, 0.0], atol=1e-6)


def test_rollout_labels_equal_the_env_iou(prm_path):
    model = _model(prm_path, prm_coef=0.0)
    model.learn(total_timesteps=16)  # one rollout and update (one env: the flattened buffer keeps step order)
    labels = model.iou_labels[:, 0]
    actions = model.rollout_buffer.actions.reshape(-1).astype(int)
    # replay the stored actions on a fresh env seeded as SB3 seeds it: the env's IoU before each step is the label
    fresh = make_env(TRAIN, DiscSegmenter(), PPOConfig(size=32, grid=GRID, width=8, max_clicks=3, n_envs=1,
                                                         trunk=prm_path, seed=0))
    fresh.reset(seed=0)
    iou = 0.0
    for t, a in enumerate(actions):
        assert labels[t] == pytest.approx(iou, abs=1e-5)
        _, _, term, trunc, info = fresh.step(int(a))
        iou = info["iou"]
        if term or trunc:
            fresh.reset()
            iou = 0.0


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_a_ppo_update_changes_the_policy_value_and_prm_head(prm_path, critic):
    model = _model(prm_path, critic=critic)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=32)
    after = model.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    fe = "features_extractor" if critic == "shared" else "pi_features_extractor"
    assert f"{fe}.head.weight" in changed  # click policy
    assert "value_net.weight" in changed  # PPO's value
    assert f"{fe}.trunk.correction.0.weight" in changed  # the PRM head
    assert not any(".trunk.down." in k for k in changed)  # the frozen grounding stays
    assert np.isfinite(model.logger.name_to_value.get("train/prm_loss", 0.0))


def test_separate_critic_starts_from_a_shared_policy_and_loads_as_ppo_path(prm_path, tmp_path):
    kw = dict(subproc=False, n_envs=1, n_steps=16, batch_size=8, n_epochs=1, max_clicks=3, size=32, grid=GRID,
              width=8, progress=False, trunk=prm_path)
    start = train(TRAIN, DiscSegmenter(), tmp_path / "start", timesteps=0, **kw)
    run = train(TRAIN, DiscSegmenter(), tmp_path / "rl", timesteps=16, init_from=start, critic="separate",
                prm_coef=1.0, trunk="no/such/prm.pt", **{k: v for k, v in kw.items() if k != "trunk"})
    agent = PPOAgent(run)
    assert agent.cfg["critic"] == "separate" and not agent.model.policy.share_features_extractor
    res = benchmark([f"ppo:{run}"], VAL, DiscSegmenter(), max_clicks=2, progress=False)
    assert res.metrics[f"ppo:{run}"]["invalid_rate"] == 0
    with pytest.raises(ValueError, match="critic"):
        PPOConfig(critic="separate").policy_kwargs()


def test_scene_cache_gives_the_features_of_a_fresh_pass(prm_path):
    model = _model(prm_path, critic="separate")
    model.learn(total_timesteps=16)  # fills (and flattens) the rollout buffer
    buf, rows = model.rollout_buffer, np.array([5, 0, 9])
    obs = preprocess_obs({k: torch.as_tensor(v[rows]) for k, v in buf.observations.items()},
                         model.observation_space, normalize_images=True)
    with torch.no_grad():
        fresh = [fe(obs) for fe in (model.policy.features_extractor, model.policy.vf_features_extractor)]
        with SceneCache(model) as cache:
            assert len(cache.fes) == 2
            SceneCache.select(model, rows)
            cached = [fe(obs) for fe in (model.policy.features_extractor, model.policy.vf_features_extractor)]
            SceneCache.select(model, rows[:2])
            with pytest.raises(RuntimeError, match="scene cache"):
                model.policy.features_extractor(obs)
    for a, b in zip(fresh, cached):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert model.policy.features_extractor.scene_cache is None  # gone after the update


def test_policy_prm_reads_the_policy_head_and_drives_the_stop_signal(prm_path, tmp_path):
    from agents.prm.scorer import load_prm
    from agents.prm.stop import PRMStop

    path = train(TRAIN, DiscSegmenter(), tmp_path / "p", timesteps=0, subproc=False, n_envs=1, max_clicks=3,
                 size=32, grid=GRID, width=8, progress=False, trunk=prm_path)
    agent = PPOAgent(path, trunk_flips=1)
    prm = load_prm("policy", agent=agent)
    s = VAL[0]
    image, target = np.asarray(s.image), np.asarray(s.target) == 1
    half = target.copy()
    half[: half.shape[0] // 2] = False
    est = prm.score_batch(image, [target, half, np.zeros_like(target)], s.caption)
    assert est[2] == 0.0 and all(0.0 <= e <= 1.0 for e in est) and est[0] == pytest.approx(prm.score(image, target,
                                                                                                   s.caption))
    # the same number as the head on the observation the agent itself builds for that state
    from types import SimpleNamespace

    wrapped = agent.observation({"image": image, "mask": target.astype(np.uint8) * 255, "caption": s.caption},
                                SimpleNamespace(clicks=(), mask=target))
    pre = preprocess_obs({k: torch.as_tensor(v[None]) for k, v in wrapped.items()},
                         agent.model.policy.observation_space, normalize_images=True)
    with torch.no_grad():
        assert est[0] == pytest.approx(float(prm_estimate(agent.model.policy, pre)[0]), abs=1e-6)
    res = benchmark([PRMStop(agent, prm)], VAL, DiscSegmenter(), max_clicks=3, progress=False)
    assert len(res.episodes) == 1
    with pytest.raises(ValueError, match="PRM trunk"):
        load_prm("policy", agent=object())

"""The PPO policy grounded on a PRM trunk: weights come from the PRM, stay frozen unless asked, and the saved
policy loads and acts through the benchmark; the caption codes it reads mirror with the image."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from agents.tools.benchmark import benchmark  # noqa: E402
from agents.ppo import PPOAgent  # noqa: E402
from agents.ppo.grounded import GroundedClickNet  # noqa: E402
from agents.ppo.train import train  # noqa: E402
from agents.prm.model import PRMConfig, PRMNet  # noqa: E402
from agents.prm.train import save_prm  # noqa: E402
from hlmat_env.captions import caption_code, code_length, mirror_code  # noqa: E402
from hlmat_env.datasets.synthetic import SyntheticDataset  # noqa: E402
from hlmat_env.wrappers import sb3_wrap  # noqa: E402
from tests.conftest import DiscSegmenter  # noqa: E402

torch.set_num_threads(1)
TRAIN = SyntheticDataset("train", size=6)
VAL = SyntheticDataset("val", size=3)
SMALL = PRMConfig(size=32, caption_dim=96, width=4, embed=16, crop=8, verifier_width=4)


@pytest.mark.parametrize("code", ["multihot", "hashed"])
def test_mirror_code_swaps_only_the_axis_relations(code):
    left = caption_code("the red disc left of the blue bar", code)[None]
    right = caption_code("the red disc right of the blue bar", code)[None]
    above = caption_code("the red disc above the blue bar", code)[None]
    assert left.shape == (1, code_length(code))
    assert np.array_equal(mirror_code(left, code, "x"), right) and np.array_equal(mirror_code(right, code, "x"), left)
    assert np.array_equal(mirror_code(left, code, "y"), left)  # no vertical relation to swap
    assert np.array_equal(mirror_code(torch.as_tensor(above), code, "y").numpy(),
                          caption_code("the red disc below the blue bar", code)[None])
    with pytest.raises(ValueError, match="caption code"):
        caption_code("x", "bag")


def test_hashed_wrapper_feeds_the_trunk_and_wrong_codes_are_refused():
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()), size=32, grid=8, finish=True,
                   caption_code="hashed")
    obs, _ = env.reset(seed=0, options={"index": 0})
    assert np.array_equal(obs["caption"], caption_code(VAL[0].caption, "hashed"))
    net = GroundedClickNet(env.observation_space, prm_config=SMALL.to_dict(), grid=8, value_dim=16)
    x = {"image": torch.rand(2, 6, 32, 32), "caption": torch.as_tensor(np.stack([obs["caption"]] * 2))}
    features, logits = net.maps(x)
    assert features.shape == (2, net.features_dim) == (2, 2 * 64 + 1 + 16) and logits.shape == (2, 1, 32, 32)
    multihot = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()), size=32, grid=8)
    with pytest.raises(ValueError, match="caption_code='hashed'"):
        GroundedClickNet(multihot.observation_space, prm_config=SMALL.to_dict(), grid=8)


def _trunk_state(path):
    return {k: v.clone() for k, v in PPOAgent(path).model.policy.features_extractor.trunk.state_dict().items()}


def test_grounded_policy_trains_its_head_on_a_frozen_prm_trunk(tmp_path):
    torch.manual_seed(0)
    prm = PRMNet(SMALL)
    for p in prm.parameters():  # not the zero/constant initialisation: a copy must be told apart from a fresh net
        p.data.normal_(0, 0.1)
    prm_path = save_prm(prm, tmp_path / "prm.pt")
    kw = dict(timesteps=16, bc_demos=tmp_path / "demos", bc_episodes=3, bc_clicks=2, bc_epochs=2, subproc=False,
              n_steps=16, batch_size=8, n_epochs=1, max_clicks=3, size=32, grid=8, width=8, progress=False,
              trunk=str(prm_path))
    path = train(TRAIN, DiscSegmenter(), tmp_path / "run", **kw)
    agent = PPOAgent(path)
    assert agent.cfg["caption_code"] == "hashed" and isinstance(agent.model.policy.features_extractor, GroundedClickNet)
    trunk = _trunk_state(path)
    assert all(torch.equal(trunk[k], v) for k, v in prm.state_dict().items())  # BC and PPO left it as loaded
    untrained = train(TRAIN, DiscSegmenter(), tmp_path / "init", **{**kw, "bc_demos": None, "timesteps": 0})
    head = {k: PPOAgent(p).model.policy.features_extractor.head.weight for k, p in
            (("init", untrained), ("bc", tmp_path / "run" / "bc_model.zip"))}
    assert not torch.allclose(head["init"], head["bc"])  # behaviour cloning trained the head
    res = benchmark([f"ppo:{path}"], VAL, DiscSegmenter(), max_clicks=3, progress=False)
    assert res.metrics[f"ppo:{path}"]["invalid_rate"] == 0
    tuned = train(TRAIN, DiscSegmenter(), tmp_path / "tuned", **{**kw, "train_trunk": True, "timesteps": 0})
    changed = _trunk_state(tuned)
    assert any(not torch.equal(changed[k], v) for k, v in prm.state_dict().items())
    loaded = PPOAgent(tuned).model.policy  # acts in eval mode: the tuned trunk's BatchNorm uses its running stats
    assert not loaded.training and not loaded.features_extractor.trunk.training


def test_behaviour_cloning_caches_the_frozen_trunk_maps_with_the_requested_flips(tmp_path, monkeypatch):
    import agents.ppo.bc as bc

    prm_path = save_prm(PRMNet(SMALL), tmp_path / "prm.pt")
    path = train(TRAIN, DiscSegmenter(), tmp_path / "run", timesteps=0, bc_demos=tmp_path / "demos", bc_episodes=2,
                 bc_clicks=2, bc_epochs=1, subproc=False, max_clicks=3, size=32, grid=8, width=8, progress=False,
                 trunk=str(prm_path))
    policy = PPOAgent(path).model.policy
    seen, original = [], bc.frozen_grounding
    monkeypatch.setattr(bc, "frozen_grounding", lambda pol, *a, **k: seen.append(pol.features_extractor.flips)
                        or original(pol, *a, **k))
    with np.load(tmp_path / "demos" / "demos.npz") as z:
        demos = dict(z)
    bc.behaviour_clone(policy, demos, epochs=1, trunk_flips=3, progress=False)
    bc.behaviour_clone(policy, demos, epochs=1, progress=False)
    assert seen == [3, 1] and policy.features_extractor.flips == 1  # restored: PPO's updates use one pass


def test_erosion_depth_peaks_at_the_centre_of_a_region():
    from agents.ppo.grounded import erosion_depth

    r = torch.zeros(1, 1, 16, 16)
    r[..., 2:11, 3:12] = 1.0  # a 9x9 square: its centre (6, 7) survives the most erosions
    d = erosion_depth(r, steps=6)[0, 0]
    assert d.argmax() == 6 * 16 + 7 and d[0, 0] == 0 and d.max() == pytest.approx(5 / 6)
    full = erosion_depth(torch.ones(1, 1, 8, 8), steps=4)[0, 0]
    assert full[0, 0] == pytest.approx(0.25) and full[3, 3] == pytest.approx(1.0)  # the border is outside


def test_trunk_flips_average_the_flipped_passes():
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()), size=32, grid=8, finish=True,
                   caption_code="hashed")
    torch.manual_seed(1)
    net = GroundedClickNet(env.observation_space, prm_config=SMALL.to_dict(), grid=8, value_dim=16).eval()
    for p in net.trunk.parameters():
        p.data.normal_(0, 0.2)
    cap = torch.as_tensor(caption_code("the red disc left of the blue bar", "hashed"))[None]
    x = {"image": torch.rand(1, 6, 32, 32), "caption": cap}
    one = net(x)
    net.flips = 4
    with torch.no_grad():
        p, est, _ = net.ground(x)
        mirrored = {"image": x["image"].flip(-1), "caption": mirror_code(cap, "hashed", "x")}
        p_m, est_m, _ = net.ground(mirrored)
        assert not torch.allclose(one, net(x))
    # the mean over the 4 flips is exactly equivariant: a mirrored scene gets the mirrored map, the same estimate
    assert torch.allclose(p_m, p.flip(-1), atol=1e-5) and torch.allclose(est_m, est, atol=1e-5)
    with pytest.raises(ValueError, match="flips"):
        GroundedClickNet(env.observation_space, prm_config=SMALL.to_dict(), grid=8, flips=5)


def test_place_in_cell_moves_a_click_to_its_side_of_the_mask_where_the_map_agrees():
    from agents.ppo.agent import cell_max_outside, place_in_cell
    from hlmat_env.actions import Click

    mask = np.zeros((8, 8), bool)
    mask[:, :3] = True  # columns 0-2 are inside
    target_map = np.tile(np.linspace(1.0, 0.0, 8), (8, 1)).astype(np.float32)  # falls from left to right
    # grid 2: cell (0, 0) is rows 0-3, cols 0-3; its only pixels outside the mask are in column 3
    assert place_in_cell(Click(1, 1, True), 2, mask, target_map) == Click(3, 0, True)
    # a negative click goes inside the mask, where the map is lowest: column 2
    assert place_in_cell(Click(3, 1, False), 2, mask, target_map) == Click(2, 0, False)
    # no pixel of the cell on the click's side: the click stays where it was
    assert place_in_cell(Click(6, 6, False), 2, mask, target_map) == Click(6, 6, False)
    best = cell_max_outside(mask, target_map, 2)
    assert best.shape == (2, 2) and best[0, 0] == pytest.approx(target_map[0, 3]) and best[0, 1] == pytest.approx(
        target_map[0, 4])
    mask[:4, :4] = True
    assert cell_max_outside(mask, target_map, 2)[0, 0] == -np.inf  # the whole cell is inside


def test_the_positive_threshold_gates_refinement_clicks_only(tmp_path):
    prm_path = save_prm(PRMNet(SMALL), tmp_path / "prm.pt")
    path = train(TRAIN, DiscSegmenter(), tmp_path / "run", timesteps=0, subproc=False, size=32, grid=8, width=8,
                 progress=False, trunk=str(prm_path), max_clicks=3)
    env = gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()).unwrapped
    obs, _ = env.reset(seed=0)
    gated = PPOAgent(path, place="map", positive_threshold=1.01)  # no map value reaches it
    assert gated.probabilities(obs, env)[:64].sum() > 0  # empty mask: the first click is never gated
    obs, *_ = env.step(env.expert_action())
    p = gated.probabilities(obs, env)
    assert p[:64].sum() == 0 and p[64:].sum() == pytest.approx(1.0)  # only negative clicks and finish remain
    with pytest.raises(ValueError, match="place='map'"):
        PPOAgent(path, positive_threshold=0.5)
    with pytest.raises(ValueError, match="no PRM trunk"):
        PPOAgent("plain", place="map")


def test_cached_grounding_gives_the_features_of_a_fresh_trunk_pass():
    from agents.ppo.bc import frozen_grounding

    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()), size=32, grid=8, finish=True,
                   caption_code="hashed")
    torch.manual_seed(2)
    net = GroundedClickNet(env.observation_space, prm_config=SMALL.to_dict(), grid=8, value_dim=16, flips=4).eval()
    for p in net.trunk.parameters():
        p.data.normal_(0, 0.2)
    caps = np.stack([caption_code(VAL[i].caption, "hashed") for i in range(3)])
    images = torch.randint(0, 256, (3, 6, 32, 32), dtype=torch.uint8)
    x = {"image": images.float() / 255, "caption": torch.as_tensor(caps)}
    policy = type("P", (), {"features_extractor": net, "observation_space": env.observation_space,
                            "normalize_images": True})()
    p, est = frozen_grounding(policy, {"image": images, "caption": torch.as_tensor(caps)}, batch_size=2,
                              progress=False)
    assert p.dtype == torch.float16 and p.shape == (3, 1, 32, 32) and est.shape == (3,)
    with torch.no_grad():
        fresh, _ = net.maps(x)
        cached, logits = net.maps(x, (p, est))
        other = net.maps(x, (1 - p, est))[0]  # the cache is what the head reads
    assert logits is None
    assert (fresh - cached).abs().max() < 0.05 * (fresh - other).abs().max()  # float16 maps: close, not equal

"""LocalClickNet (``train-ppo --net local``): shapes, translation equivariance, training from scratch end to end."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from agents.ppo.local import LocalClickNet  # noqa: E402
from agents.ppo.train import PPOConfig, train  # noqa: E402
from agents.tools.benchmark import benchmark  # noqa: E402
from hlmat_env.datasets.synthetic import SyntheticDataset  # noqa: E402
from hlmat_env.wrappers import sb3_wrap  # noqa: E402
from tests.conftest import DiscSegmenter  # noqa: E402

torch.set_num_threads(1)
VAL = SyntheticDataset("val", size=3)


def _space(size: int, caption: bool) -> gym.spaces.Dict:
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=VAL, segmenter=DiscSegmenter()), size=size, grid=8,
                   finish=True, caption=caption)
    return env.observation_space


@pytest.mark.parametrize("caption,finish", [(True, True), (False, False)])
def test_local_clicknet_shapes(caption, finish):
    space = _space(32, caption)
    net = LocalClickNet(space, grid=8, finish=finish, width=8, value_dim=16)
    obs = {"image": torch.rand(2, 6, 32, 32)}
    if caption:
        obs["caption"] = torch.rand(2, space["caption"].shape[0])
    assert net(obs).shape == (2, 2 * 64 + int(finish) + 16) == (2, net.features_dim)


def test_local_clicknet_is_translation_equivariant():
    """Shifting the image by one cell shifts the click maps by one cell (away from the borders): the same
    detector at every position, which is what lets one rewarded click teach every cell."""
    torch.manual_seed(0)
    net = LocalClickNet(_space(64, False), grid=32, finish=True, width=8, value_dim=4)
    torch.nn.init.normal_(net.head.weight)  # (zero at initialisation: every map would be trivially equal)
    x = torch.rand(1, 6, 64, 64)
    shifted = torch.roll(x, shifts=(2, 2), dims=(2, 3))  # 2 pixels = one cell of the S/2 map
    maps = net({"image": x})[:, : 2 * 32 * 32].view(1, 2, 32, 32)
    maps_shifted = net({"image": shifted})[:, : 2 * 32 * 32].view(1, 2, 32, 32)
    inner = slice(9, 22)  # receptive field: 8 cells, so these see no border in either image
    torch.testing.assert_close(maps_shifted[..., 10:23, 10:23], maps[..., inner, inner])
    assert not torch.allclose(maps[..., inner, inner], maps[..., 10:23, 10:23])  # and the map is not flat


def test_local_net_is_for_plain_policies_only():
    with pytest.raises(ValueError, match="net"):
        PPOConfig(net="resnet").policy_kwargs()
    with pytest.raises(ValueError, match="grounded"):
        PPOConfig(net="local", trunk="some_prm.pt").policy_kwargs(prm_config={})


def test_train_from_scratch_with_the_local_net(tmp_path):
    out = tmp_path / "run"
    kw = dict(timesteps=64, subproc=False, n_steps=16, batch_size=16, n_epochs=2, max_clicks=3, size=32, grid=8,
              width=8, progress=False, checkpoint_every=16, net="local", learning_rate=1e-2)
    path = train(SyntheticDataset("train", size=8), DiscSegmenter(), out, **kw)
    assert json.loads((out / "model.json").read_text())["net"] == "local"
    import csv

    cpu = [float(r["time/cpu_s"]) for r in csv.DictReader(open(out / "progress.csv"))]
    assert len(cpu) == 2 and 0 < cpu[0] <= cpu[1]  # CPU seconds logged with every rollout, never decreasing
    from stable_baselines3 import PPO

    model = PPO.load(path, device="cpu")
    assert isinstance(model.policy.features_extractor, LocalClickNet)
    assert model.policy.features_extractor.head.weight.abs().sum() > 0  # PPO moved it off its zero start
    res = benchmark([f"ppo:{out}"], VAL, DiscSegmenter(), max_clicks=3, progress=False)
    m = res.metrics[f"ppo:{out}"]
    assert m["invalid_rate"] == 0 and 0 <= m["miou@3"] <= 1
    assert np.isfinite(m["miou@1"])
    from agents.ppo.miou_curve import checkpoint_curve

    rows = checkpoint_curve({"scratch": out}, None, VAL, limit=2, max_clicks=2)["scratch"]  # no start model
    assert [r["steps"] for r in rows] == [16, 32, 48, 64] and all(0 <= r["miou@1"] <= 1 for r in rows)

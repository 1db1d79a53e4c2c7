"""Grounding pretraining of the PRM trunk: scenes are built the same in any number of processes and cached
with a record, training lowers the map loss and writes a PRM checkpoint that ``train-ppo --trunk`` loads, a
killed run resumes to the same weights, and the pointing accuracy counts what it says."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agents.prm import trunk as trunk_train
from agents.prm.model import PRMConfig
from agents.prm.train import load_prm_net
from agents.prm.trunk import (SceneMaps, TrunkSettings, build_scenes, load_or_build_scenes, pointing_accuracy,
                                train_trunk)
from hlmat_env.datasets.synthetic import SyntheticDataset
from hlmat_env.errors import HLMATError

torch.set_num_threads(1)
TINY = PRMConfig(size=16, width=4, embed=16, crop=8, verifier_width=4)
DATA = SyntheticDataset("train", size=12)


def test_scenes_do_not_depend_on_the_worker_count_and_the_cache_checks_its_record(tmp_path):
    one = build_scenes(DATA, range(12), obs_size=32, size=16)
    two = build_scenes(DATA, range(12), obs_size=32, size=16, workers=2)
    assert one.images.shape == (12, 3, 32, 32) and one.targets.shape == (12, 16, 16) and len(one) == 12
    assert np.array_equal(one.images, two.images) and np.array_equal(one.targets, two.targets)
    assert one.captions == two.captions == [DATA[i].caption for i in range(12)]
    assert one.targets.max() == 255 and (one.targets.reshape(12, -1).max(1) > 0).all()  # every target is there
    cached = load_or_build_scenes(tmp_path / "scenes.npz", DATA, range(12), obs_size=32, size=16)
    again = load_or_build_scenes(tmp_path / "scenes.npz", DATA, range(12), obs_size=32, size=16)
    assert np.array_equal(cached.images, again.images) and cached.captions == again.captions
    with pytest.raises(HLMATError, match="size"):
        load_or_build_scenes(tmp_path / "scenes.npz", DATA, range(12), obs_size=32, size=24)


def test_pointing_accuracy_counts_peaks_on_the_target():
    targets = np.zeros((4, 8, 8), np.uint8)
    targets[:, 2:5, 2:5] = 255
    scenes = SceneMaps(np.zeros((4, 3, 8, 8), np.uint8), targets, ["the red disc"] * 4)
    peaks = torch.full((4, 8, 8), -5.0)
    peaks[:3, 3, 3] = 5.0  # three maps peak inside the target, one at a corner outside it
    peaks[3, 7, 7] = 5.0

    class Net(torch.nn.Module):
        config = SimpleNamespace(caption_dim=96, size=8)

        def scene(self, images, captions):
            return SimpleNamespace(logits=peaks[:len(images)])

    assert pointing_accuracy(Net(), scenes) == pytest.approx(75.0)


def test_training_lowers_the_map_loss_and_the_trunk_feeds_a_grounded_policy(tmp_path):
    scenes = build_scenes(DATA, range(12), obs_size=32, size=16)
    settings = TrunkSettings(steps=60, batch_size=6, lr=1e-2, checkpoint_every=20)
    path = train_trunk(scenes, tmp_path / "t", config=TINY, settings=settings, val=scenes, progress=False)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    log = ckpt["metrics"]
    assert 0 <= log["pointing"] <= 100 and 0 <= log["pointing_4_flips"] <= 100 and log["scenes"] == 12
    losses = [row["loss"] for row in json.loads((tmp_path / "t" / "trunk_log.json").read_text())]
    assert len(losses) == 1 and log["final_loss"] == losses[-1]
    net = load_prm_net(path)
    assert net.config == TINY
    fresh = trunk_train.PRMNet(TINY)
    with torch.no_grad():
        x = trunk_train.trunk_input(torch.from_numpy(scenes.images), 16)
        caps = trunk_train.caption_table(scenes.captions, TINY.caption_dim)[:, 0]
        t = torch.from_numpy(scenes.targets).float() / 255
        trained_loss = trunk_train.map_loss(net.scene(x, caps).logits, t)
        fresh_loss = trunk_train.map_loss(fresh.eval().scene(x, caps).logits, t)
    assert trained_loss < fresh_loss - 0.1  # it learnt the training maps
    # the IoU head is untouched: its correction still outputs zero, the estimate is the map's fuzzy IoU
    assert not net.correction[2].weight.any() and not net.correction[2].bias.any()


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    scenes = build_scenes(DATA, range(12), obs_size=32, size=16)
    settings = TrunkSettings(steps=8, batch_size=4, checkpoint_every=3)
    whole = load_prm_net(train_trunk(scenes, tmp_path / "whole", config=TINY, settings=settings, progress=False))
    calls = {"n": 0}
    real = trunk_train.map_loss

    def dies_at_step_5(logits, targets):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # killed after the step-3 checkpoint
        return real(logits, targets)

    monkeypatch.setattr(trunk_train, "map_loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_trunk(scenes, tmp_path / "killed", config=TINY, settings=settings, progress=False)
    assert torch.load(tmp_path / "killed" / trunk_train.CHECKPOINT, weights_only=False)["step"] == 3
    monkeypatch.setattr(trunk_train, "map_loss", real)
    resumed = load_prm_net(train_trunk(scenes, tmp_path / "killed", config=TINY, settings=settings, resume=True,
                                       progress=False))
    for k, v in whole.state_dict().items():
        assert torch.allclose(v.float(), resumed.state_dict()[k].float(), atol=1e-6), k
    with pytest.raises(ValueError, match="other settings"):
        train_trunk(scenes, tmp_path / "killed", config=TINY, settings=TrunkSettings(steps=9, batch_size=4),
                    resume=True, progress=False)


@pytest.mark.slow
def test_data_parallel_training_runs_on_two_processes(tmp_path):
    scenes = build_scenes(DATA, range(12), obs_size=32, size=16)
    settings = TrunkSettings(steps=6, batch_size=3, checkpoint_every=3)
    path = train_trunk(scenes, tmp_path / "ddp", config=TINY, settings=settings, workers=2, progress=False)
    net, fresh = load_prm_net(path), trunk_train.PRMNet(TINY)
    assert torch.load(path, weights_only=False)["metrics"]["workers"] == 2
    assert not torch.equal(net.out.weight, fresh.out.weight)  # the processes trained one shared net

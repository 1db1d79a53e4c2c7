"""The shipped default PRM (``--prm default``: ``agents/assets/prm_default.pt``) and the train-prm options it was
trained with: mixed datasets, rollout start states, caption dropout."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from agents.prm.data import PRMData, build_prm_dataset
from agents.prm.model import PRMConfig, PRMNet
from hlmat_env.datasets import make_dataset
from hlmat_env.errors import CheckpointError

ASSETS = Path(str(resources.files("agents") / "assets"))
CFG = PRMConfig(size=32, width=4, caption_dim=16, embed=32, verifier_width=4)


def test_default_prm_loads_and_scores_masks_in_the_unit_interval():
    from agents.prm.scorer import LearnedPRM, load_prm

    prm = load_prm("default")
    assert isinstance(prm, LearnedPRM) and Path(prm.path) == ASSETS / "prm_default.pt"
    s = make_dataset("synthetic:val")[0]
    gt = s.target > 0
    shifted = np.roll(gt, gt.shape[1] // 3, axis=1)
    scores = prm.score_batch(s.image, [gt, shifted, np.ones_like(gt), np.zeros_like(gt)], s.caption)
    assert all(0.0 <= v <= 1.0 for v in scores) and scores[3] == 0.0
    assert scores[0] > scores[2]  # the target itself beats the whole image
    assert load_prm("default,default").score(s.image, gt, s.caption) == pytest.approx(scores[0], abs=1e-6)


def test_default_prm_settings_record_names_its_data_and_the_command():
    record = json.loads((ASSETS / "prm_default.json").read_text())
    assert "hlmat train-prm" in record["command"] and "--extra-dataset" in record["command"]
    data = " ".join(record["data"])
    assert "synthetic:train" in data and "coco128_seg" in data
    assert len(record["segmenter_version"]) == 12 and record["cpu_minutes"] > 0
    import torch

    ckpt = torch.load(ASSETS / "prm_default.pt", map_location="cpu", weights_only=True)
    assert PRMConfig(**ckpt["config"]).to_dict() == record["config"]
    assert (ASSETS / "prm_default.pt").stat().st_size < 8_000_000


def test_a_missing_default_prm_is_a_clear_error(monkeypatch, tmp_path):
    from agents.prm import scorer

    monkeypatch.setattr(scorer, "DEFAULT_PRM", "no_such_prm.pt")
    with pytest.raises(CheckpointError, match="default PRM is missing: .*no_such_prm.pt"):
        scorer.load_prm("default")
    monkeypatch.chdir(tmp_path)  # a file named 'default' in the working folder is a path, as for ppo
    with pytest.raises(CheckpointError):
        scorer.checkpoint_paths("default")
    (tmp_path / "default").write_bytes(b"")
    assert scorer.checkpoint_paths("default") == ["default"]


def test_caption_dropout_shows_that_share_of_scenes_with_the_empty_caption(monkeypatch):
    from agents.prm import train as train_mod
    from agents.prm.train import caption_table

    data = build_prm_dataset("synthetic:val", range(8), config=CFG, rollout_clicks=0, n_degraded=2, seed=0)
    empty = caption_table([""], CFG.caption_dim)[0, 0]
    seen: list = []

    class Spy(PRMNet):
        def scene(self, images, captions):
            if self.training:
                seen.append(captions.detach().clone())
            return super().scene(images, captions)

    monkeypatch.setattr(train_mod, "PRMNet", Spy)
    shares = {}
    for p in (0.0, 0.5, 1.0):
        seen.clear()
        train_mod.train_prm(data, None, config=CFG, epochs=4, batch_size=8, caption_dropout=p, seed=0)
        rows = np.concatenate([(c == empty).all(1).numpy() for c in seen])
        shares[p] = rows.mean()
    assert shares[0.0] == 0.0 and shares[1.0] == 1.0 and 0.2 < shares[0.5] < 0.8, shares
    with pytest.raises(ValueError, match="caption_dropout"):
        train_mod.train_prm(data, None, config=CFG, epochs=1, caption_dropout=1.5)


def test_rollout_starts_robot_and_box(disc_segmenter):
    data = build_prm_dataset("synthetic:val", range(3), segmenter=disc_segmenter, config=CFG, rollout_clicks=2,
                             n_degraded=0, starts=("robot", "box"), seed=0)
    kinds = set(data.sources)
    assert {"rollout0.7-robot", "rollout0.3-robot", "rollout0.7-box", "rollout0.3-box"} <= kinds
    assert not any(k in ("rollout0.7", "rollout0.3") for k in kinds)
    # the first state of each robot-start rollout is the mask of the robot user's first click: the same in the
    # p=0.7 and the p=0.3 rollout of a scene, whatever the noise
    first = {}
    for i, (sc, src) in enumerate(zip(data.state_scene, data.sources)):
        if src.endswith("-robot"):
            first.setdefault((int(sc), src), i)
    for sc in range(3):
        a, b = first[(sc, "rollout0.7-robot")], first[(sc, "rollout0.3-robot")]
        assert np.array_equal(data.masks[a], data.masks[b])
    with pytest.raises(ValueError, match="rollout start"):
        build_prm_dataset("synthetic:val", range(1), config=CFG, starts=("middle",))


def test_train_prm_mixes_an_extra_dataset_and_eval_prm_builds_real_style_states(tmp_path, capsys):
    from agents.cli import main

    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["train-prm", "--out", str(out), "--cache", str(cache), "--limit", "3", "--extra-scenes", "2",
            "--extra-dataset", "synthetic:val?size=200", "--extra-limit", "2", "--starts", "robot",
            "--val-limit", "1", "--select-from-train", "1", "--rollout-clicks", "1", "--n-degraded", "1",
            "--extra-single-clicks", "0", "--caption-dropout", "0.5", "--epochs", "1", "--size", "32",
            "--width", "4", "--verifier-width", "4", "--no-progress"]
    assert main(args) == 0
    mix, extra = PRMData.load(cache / "mix0_train.npz"), PRMData.load(cache / "mix0_extra.npz")
    val_ids = [s.sample_id for s in make_dataset("synthetic:val?size=200")][:4]
    assert mix.scene_ids == val_ids[:2] and extra.scene_ids == val_ids[2:4]
    metrics = json.loads((out / "metrics.json").read_text())
    # 2 rollout scenes per dataset, the last of each held out for selection; the cheap scenes of both
    train = PRMData.load(cache / "train.npz")
    n_train = sum(len(d) for d in (train, mix)) - sum(
        int(np.sum(d.state_scene == len(d.scene_ids) - 1)) for d in (train, mix))
    assert metrics["train_states"] == n_train + len(PRMData.load(cache / "extra.npz")) + len(extra)
    assert json.loads((cache / "mix0_train.json").read_text())["extra_dataset"] == ["synthetic:val?size=200"]
    other = [("box" if a == "robot" else a) for a in args]
    assert main(other) == 2  # another recipe (rollout starts): the cached states are refused
    assert "starts" in capsys.readouterr().err

    states = tmp_path / "held.npz"
    ev = ["eval-prm", "--prm", str(out / "prm.pt"), "--dataset", "synthetic:val", "--limit", "2", "--states",
          str(states), "--rollout-clicks", "1", "--single-clicks", "0", "--by-source"]
    assert main(ev + ["--out", str(tmp_path / "keep.json")]) == 0
    assert main(ev + ["--captions", "empty", "--out", str(tmp_path / "empty.json")]) == 0  # reuses the states
    keep, empty = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("keep", "empty"))
    key = str(out / "prm.pt")
    assert keep[key]["n"] == empty[key]["n"] == len(PRMData.load(states))
    assert keep[key]["mae"] != empty[key]["mae"]  # the same states scored without their captions
    assert "mae_constant" in keep[key] and f"{key} [rollout0.7-robot]" in keep
    assert main([("3" if a == "2" else a) for a in ev]) == 2  # other settings (--limit 3): refused


def test_rollout_starts_parse_and_bad_ones_are_named():
    from agents.prm.data import check_starts
    from hlmat_env.errors import InvalidOption

    assert check_starts("robot,box") == ("robot", "box") == check_starts(["robot", "box"])
    with pytest.raises(InvalidOption, match="'nope'"):
        check_starts("robot,nope")
    with pytest.raises(InvalidOption, match="at least one"):
        check_starts("")

"""The learned PRM (inputs, IoU head, augmentation, training beats a constant predictor), the MLLM's own PRM, and
mask scoring."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from agents.base import Agent, Decision
from agents.prm.scorer import LearnedPRM, MLLMPRM
from agents.prm.data import PRMData, build_prm_dataset
from agents.prm.model import RELATIONS, PRMConfig, PRMNet, caption_features, resize_image
from agents.prm.train import evaluate_prm, flip_caption, load_prm_net as load_net, save_prm, train_prm
from hlmat_env.datasets import make_dataset
from hlmat_env.masks import coverage_map, encode_rle
from hlmat_env.metrics import iou

CFG = PRMConfig(size=32, width=8, caption_dim=16, embed=32)


def test_inputs_and_caption_features():
    img = np.zeros((30, 40, 3), np.uint8)
    m = np.zeros((30, 40), bool)
    m[5:10, 20:30] = True
    assert resize_image(img, 32).shape == (3, 32, 32) and resize_image(img, 32).dtype == np.uint8
    small = coverage_map(m, 32)
    assert small.shape == (32, 32) and small.dtype == np.uint8
    assert small.sum() / 255 / 32**2 == pytest.approx(m.mean(), rel=0.02)  # area resampling keeps coverage
    a, b = caption_features("the red disc", 16), caption_features("The  red DISC!", 16)
    assert a.shape == (2 * 16 + len(RELATIONS) + 1,) and np.allclose(a, b)
    assert np.linalg.norm(a[:16]) == pytest.approx(1.0) and not a[16:32].any() and a[-1] == 1.0
    rel = caption_features("the red disc left of the blue ring", 16)
    assert rel[32 + RELATIONS.index("left of")] == 1.0 and rel[-1] == 0.0
    assert np.allclose(rel[:16], a[:16]) and np.allclose(rel[16:32], caption_features("the blue ring", 16)[:16])
    # head and tail are separate: swapping the two objects changes the code
    assert not np.allclose(rel, caption_features("the blue ring left of the red disc", 16))
    assert caption_features("", 16).sum() == 1.0
    with pytest.raises(ValueError, match="uint8"):
        resize_image(img.astype(np.float32), 32)


def test_iou_head_reads_true_iou_from_a_perfect_target_map():
    """The IoU estimate is built on the fuzzy IoU of map and mask: an untrained head (zero correction) given
    the true target coverage as its map returns the mask's IoU, for any mask, up to resampling."""
    import torch

    torch.manual_seed(0)
    model = PRMNet(CFG).eval()
    s = make_dataset("synthetic:val")[0]
    gt = s.target > 0
    rng = np.random.default_rng(0)
    from hlmat_env.masks import degrade

    masks = [gt, degrade(gt, rng), degrade(gt, rng, 1.0), np.roll(gt, 25, axis=1), np.ones_like(gt)]
    cover = torch.from_numpy(coverage_map(gt, 32)).float() / 255
    logits = torch.logit(cover.clamp(1e-6, 1 - 1e-6))[None].expand(len(masks), -1, -1)
    with torch.no_grad():
        code = model.scene(torch.from_numpy(resize_image(s.image, 32))[None].expand(len(masks), -1, -1, -1),
                           torch.from_numpy(caption_features(s.caption, 16))[None].expand(len(masks), -1))
        est = model.iou(code._replace(logits=logits), torch.from_numpy(np.stack([coverage_map(m, 32) for m in masks])))
    true = np.array([iou(m, s.target) for m in masks])
    assert np.abs(est.numpy() - true).max() < 0.05, (est, true)


def test_verifier_crops_surround_the_mask():
    """The verifier's square crop holds the whole mask with a margin; an empty mask gets the whole map."""
    import torch

    from agents.prm.model import mask_boxes

    m = torch.zeros(3, 32, 32)
    m[0, 4:8, 10:20] = 1.0   # 4 x 10 bar
    m[1, 30:32, 0:2] = 1.0   # tiny, at a corner
    boxes = mask_boxes(m).tolist()
    assert boxes[0] == pytest.approx([7.5, -1.5, 22.5, 13.5])  # centre (15, 6), side 1.5 * 10
    x1, y1, x2, y2 = boxes[1]
    assert x2 - x1 == pytest.approx(6.0) and y2 - y1 == pytest.approx(6.0) and x1 <= 0 and y2 >= 32
    assert boxes[2] == [0.0, 0.0, 32.0, 32.0]


def test_flip_caption_and_augment_keep_maps_aligned():
    import torch

    from agents.prm.train import augment

    assert flip_caption("The disc LEFT of the ring", True, False) == "the disc right of the ring"
    assert flip_caption("the bar above the star", True, True) == "the bar below the star"
    assert flip_caption("the bar above the star", True, False) == "the bar above the star"
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (8, 3, 16, 16), dtype=np.uint8))
    target = torch.rand(8, 16, 16)
    flips = torch.arange(8) % 4
    out, (t,) = augment(img, [target], flips, torch.Generator().manual_seed(0))
    assert out.shape == img.shape and float(out.min()) >= 0 and float(out.max()) <= 255
    for i, f in enumerate(flips.tolist()):
        dims = [d for bit, d in ((1, -1), (2, -2)) if f & bit]
        want = target[i].flip(dims) if dims else target[i]
        assert torch.equal(t[i], want)
        # the image moved the same way: its flipped-back brightness pattern correlates with the original
        back = out[i].flip(dims) if dims else out[i]
        assert np.corrcoef(back.flatten().numpy(), img[i].float().flatten().numpy())[0, 1] > 0.99


@pytest.mark.slow
def test_training_fits_states_and_keeps_best_epoch(disc_segmenter):
    """Training works end to end: the IoU estimates fit the training states far better than a constant (the
    target map is learnt from the targets, the head from the labels), and early stopping returns the epoch with
    the lowest selection MAE. Generalisation needs thousands of scenes: that is `hlmat train-prm`'s report."""
    train = build_prm_dataset("synthetic:train", range(16), segmenter=disc_segmenter, config=CFG,
                              rollout_clicks=3, n_degraded=3, seed=0)
    val = build_prm_dataset("synthetic:val", range(4), segmenter=disc_segmenter, config=CFG,
                            rollout_clicks=3, n_degraded=3, seed=1)
    assert train.images.shape[1:] == (3, 32, 32) and train.masks.shape[1:] == (32, 32)
    assert len(set(train.sources)) >= 4 and len(train.scene_ids) == 16
    assert ((train.labels >= 0) & (train.labels <= 1)).all()
    model, history = train_prm(train, None, config=CFG, epochs=40, batch_size=4, lr=5e-3, augment_data=False)
    fit = evaluate_prm(model, train, history["train_mean"])
    # measured over seeds 0-2: MAE 0.22-0.45 of the constant's, Pearson 0.87-0.98
    assert fit["mae"] < 0.6 * fit["mae_constant"] and fit["pearson"] > 0.8, fit
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    model, history = train_prm(train, val, config=CFG, epochs=4, batch_size=4, lr=5e-3, augment_data=False)
    maes = [h["mae"] for h in history["val"]]
    m = evaluate_prm(model, val)
    assert history["best_epoch"] == int(np.argmin(maes)) and m["mae"] == pytest.approx(min(maes), abs=1e-4)


def test_states_save_load_split_and_workers(tmp_path, disc_segmenter):
    one = build_prm_dataset("synthetic:val", range(3), segmenter=disc_segmenter, config=CFG, rollout_clicks=2,
                            n_degraded=1, seed=3)
    two = build_prm_dataset("synthetic:val", range(3), segmenter=disc_segmenter, config=CFG, rollout_clicks=2,
                            n_degraded=1, seed=3, workers=2)
    assert np.array_equal(one.labels, two.labels) and np.array_equal(one.masks, two.masks)
    assert len(one.scene_ids) == 3 and one.sample_ids[0] == one.scene_ids[0]
    back = PRMData.load(one.save(tmp_path / "s.npz"))
    assert np.array_equal(back.masks, one.masks) and back.sources == one.sources and back.captions == one.captions
    a, b = one.split([True, False, True])
    assert len(a.scene_ids) == 2 and len(a) + len(b) == len(one) and set(b.sample_ids) == {one.scene_ids[1]}
    both = PRMData.concat([a, b])
    assert sorted(both.sample_ids) == sorted(one.sample_ids)
    assert np.array_equal(both.targets[both.state_scene], np.concatenate([a.targets[a.state_scene],
                                                                         b.targets[b.state_scene]]))
    cheap = build_prm_dataset("synthetic:val", range(2), config=CFG, rollout_clicks=0, n_degraded=2, seed=3)
    assert set(cheap.sources) == {"degraded", "box", "target"}
    clicked = build_prm_dataset("synthetic:val", range(2), segmenter=disc_segmenter, config=CFG, rollout_clicks=0,
                                n_degraded=2, single_clicks=3, seed=3)
    extra = np.array([s == "single-click" for s in clicked.sources])
    # the cheap states are unchanged (same draws first); the single clicks come on top, with their true IoU
    assert np.array_equal(clicked.masks[~extra], cheap.masks) and extra.sum() == 6
    assert (clicked.labels[extra] < 1).all()
    with pytest.raises(ValueError, match="PRMData.save"):
        PRMData.load(tmp_path / "missing.npz")


def _checkpoint(tmp_path):
    import torch

    torch.manual_seed(0)
    return save_prm(PRMNet(CFG).eval(), tmp_path / "prm" / "prm.pt")


def test_learned_prm_matches_batch_prediction_with_and_without_flips(tmp_path):
    """The scorer agents use and the evaluation of `train-prm` compute the same estimates, for 1 and 4 flips."""
    from agents.prm.train import predict

    path = _checkpoint(tmp_path)
    data = build_prm_dataset("synthetic:val", range(3), config=CFG, rollout_clicks=0, n_degraded=0, seed=0)
    ds = make_dataset("synthetic:val")
    for flips in (1, 4):
        prm, batch = LearnedPRM(path, flips=flips), predict(load_net(path), data, flips=flips)
        for i, src in enumerate(data.sources):
            s = ds[int(data.state_scene[i])]
            mask = s.target > 0 if src == "target" else None
            if mask is not None:
                assert prm.score(s.image, mask, s.caption) == pytest.approx(float(batch[i]), abs=1e-5)
    one, four = predict(load_net(path), data, flips=1), predict(load_net(path), data, flips=4)
    assert not np.allclose(one, four)  # the flips are real passes, not copies
    with pytest.raises(ValueError, match="flips"):
        LearnedPRM(path, flips=5)


def test_learned_prm_scorer(tmp_path):
    prm = LearnedPRM(_checkpoint(tmp_path).parent)
    ds = make_dataset("synthetic:val")
    s, t = ds[0], ds[1]
    gt = s.target > 0
    batch = prm.score_batch(s.image, [gt, np.zeros_like(gt), ~gt], s.caption)
    assert batch[1] == 0.0  # empty mask
    assert 0.0 <= batch[0] <= 1.0 and batch[0] == pytest.approx(prm.score(s.image, gt, s.caption), abs=1e-6)
    # the kept target map follows the image and the caption
    fresh = LearnedPRM(_checkpoint(tmp_path).parent)
    other = prm.score(t.image, t.target > 0, t.caption)
    assert other == pytest.approx(fresh.score(t.image, t.target > 0, t.caption), abs=1e-6)
    assert prm.score(s.image, gt, "the blue ring") == pytest.approx(fresh.score(s.image, gt, "the blue ring"),
                                                                    abs=1e-6)
    assert prm.score(s.image, gt, s.caption) == pytest.approx(batch[0], abs=1e-6)
    with pytest.raises(ValueError, match="mask shape"):
        prm.score(s.image, gt[:-1], s.caption)
    with pytest.raises(FileNotFoundError, match="train-prm"):
        LearnedPRM(tmp_path / "missing.pt")


class TextAgent(Agent):
    def __init__(self, text):
        self.text = text

    def act(self, obs, env):
        assert obs["image"].shape == (128, 128, 3) and env.mask.dtype == bool
        return Decision(None, "x", text=self.text)


@pytest.mark.parametrize("text, expected", [("Current IOU: 74, Positive point: (10, 20)", 0.74),
                                            ("Positive point: (10, 20)", 0.0), ("garbage", 0.0)])
def test_mllm_prm_reads_current_iou(text, expected):
    s = make_dataset("synthetic:val")[0]
    prm = MLLMPRM(TextAgent(text))
    assert prm.score(s.image, s.target > 0, s.caption) == pytest.approx(expected)


@pytest.mark.slow
def test_score_masks_command(tmp_path):
    from agents.cli import score_masks

    ckpt = _checkpoint(tmp_path)
    ds = make_dataset("synthetic:val")
    rows = []
    for i in range(2):
        gt = ds[i].target > 0
        rows.append({"image_id": i, "segmentation": encode_rle(gt), "score": 0.9, "category_id": 1})
        rows.append({"image_id": ds.sample_id(i), "segmentation": encode_rle(~gt), "score": 0.5, "category_id": 1})
    (tmp_path / "res.json").write_text(json.dumps(rows))
    args = argparse.Namespace(prm=str(ckpt), dataset="synthetic:val", masks=str(tmp_path / "res.json"),
                              out=str(tmp_path / "scored.json"), threshold=0.5)
    assert score_masks.run(args) == 0
    out = json.loads((tmp_path / "scored.json").read_text())
    assert len(out) == 4 and [r["score"] for r in out] == [r["score"] for r in rows]
    for r in out:
        assert 0.0 <= r["prm_iou"] <= 1.0 and r["low_quality"] == (r["prm_iou"] < 0.5)
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 10**6, "segmentation": rows[0]["segmentation"]}]))
    args.masks = str(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="matches no sample"):
        score_masks.run(args)


def test_train_prm_command_reuses_its_cache_only_with_the_same_recipe(tmp_path, capsys):
    """``hlmat train-prm --cache``: a second run reuses the states; a changed recipe or another segmenter
    version is refused with a one-line error (exit 2), not silently mixed in."""
    from agents.cli import main

    base = ["train-prm", "--cache", str(tmp_path / "cache"), "--limit", "3", "--extra-scenes", "2",
            "--val-limit", "2", "--select-from-train", "1", "--rollout-clicks", "2", "--n-degraded", "1",
            "--epochs", "1", "--size", "32", "--width", "4", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "prm.pt").exists() and (tmp_path / "cache" / "train.json").exists()
    stamp = (tmp_path / "cache" / "train.npz").stat().st_mtime_ns
    assert main(base + ["--out", str(tmp_path / "b")]) == 0  # same recipe: the cached states are reused
    assert (tmp_path / "cache" / "train.npz").stat().st_mtime_ns == stamp
    # another training seed trains on the same states (reused) and gives another network
    assert main(base + ["--out", str(tmp_path / "b1"), "--train-seed", "1"]) == 0
    assert (tmp_path / "cache" / "train.npz").stat().st_mtime_ns == stamp
    import torch

    w0, w1 = (torch.load(tmp_path / d / "prm.pt", weights_only=True)["state_dict"]["out.weight"] for d in ("b", "b1"))
    assert not torch.equal(w0, w1)
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "c"), "--rollout-clicks", "3"]) == 2
    assert "rollout_clicks" in capsys.readouterr().err
    record = tmp_path / "cache" / "train.json"
    record.write_text(record.read_text().replace('"segmenter_version": "', '"segmenter_version": "0ld'))
    assert main(base + ["--out", str(tmp_path / "d")]) == 2
    assert "segmenter_version" in capsys.readouterr().err


def test_absolute_iou_loss_trains_and_unknown_loss_is_refused():
    data = build_prm_dataset("synthetic:val", range(4), config=CFG, rollout_clicks=0, n_degraded=2, seed=0)
    model, history = train_prm(data, None, config=CFG, epochs=6, batch_size=4, lr=5e-3, augment_data=False,
                               iou_loss="l1")
    assert history["train_iou"][-1] < history["train_iou"][0]  # the smooth-L1 IoU error falls
    with pytest.raises(ValueError, match="iou_loss"):
        train_prm(data, None, config=CFG, epochs=1, iou_loss="hinge")


def test_ensemble_prm_is_the_mean_of_its_members(tmp_path):
    import torch

    from agents.prm.scorer import EnsemblePRM, load_prm

    a = _checkpoint(tmp_path)
    torch.manual_seed(1)
    b = save_prm(PRMNet(CFG).eval(), tmp_path / "prm_b" / "prm.pt")
    s = make_dataset("synthetic:val")[0]
    masks = [s.target > 0, np.zeros_like(s.target, bool), s.target <= 0]
    ens = load_prm(f"{a},{b}")
    assert isinstance(ens, EnsemblePRM) and isinstance(load_prm(str(a)), LearnedPRM)
    one, two = LearnedPRM(a).score_batch(s.image, masks, s.caption), LearnedPRM(b).score_batch(s.image, masks, s.caption)
    assert one != two  # two different heads, so the mean is a real average
    assert ens.score_batch(s.image, masks, s.caption) == pytest.approx([(x + y) / 2 for x, y in zip(one, two)])
    assert ens.score(s.image, masks[0], s.caption) == pytest.approx((one[0] + two[0]) / 2)
    with pytest.raises(ValueError, match="at least one"):
        EnsemblePRM([])


def test_eval_prm_command_reports_members_and_their_mean(tmp_path, capsys):
    import torch

    from agents.cli import eval_prm
    from agents.prm.train import predict, regression_metrics

    a = _checkpoint(tmp_path)
    torch.manual_seed(1)
    b = save_prm(PRMNet(CFG).eval(), tmp_path / "prm_b" / "prm.pt")
    data = build_prm_dataset("synthetic:val", range(3), config=CFG, rollout_clicks=0, n_degraded=2, seed=0)
    data.save(tmp_path / "states.npz")
    parser = argparse.ArgumentParser().add_subparsers()
    eval_prm.add_parser(parser)
    args = parser.choices["eval-prm"].parse_args(["--prm", f"{a},{b}", "--states", str(tmp_path / "states.npz"),
                                                  "--flips", "2", "--out", str(tmp_path / "m.json")])
    assert eval_prm.run(args) == 0
    got = json.loads((tmp_path / "m.json").read_text())
    pa, pb = predict(load_net(a), data, flips=2), predict(load_net(b), data, flips=2)
    assert got[str(a)]["mae"] == pytest.approx(regression_metrics(pa, data.labels)["mae"])
    assert got["mean of all"]["mae"] == pytest.approx(regression_metrics((pa + pb) / 2, data.labels)["mae"])
    assert "| mean of all |" in capsys.readouterr().out

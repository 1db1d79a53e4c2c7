"""What the SAM and SAM 2 segmenter tests share: the test image and target, the plain predictor loop (the
reference), a stand-in default segmenter, and the checks both segmenters must pass (one encoding per image
across episodes, batched = sequential, box and mask prior, disk cache, the env on top, a light import)."""
from __future__ import annotations

import subprocess
import sys
from typing import Any, Callable

import numpy as np
import pytest

from hlmat_env.actions import Click
from hlmat_env.robot_user import RobotUser
from hlmat_env.segmenters import Prediction


def image(seed: int, h: int = 90, w: int = 120) -> np.ndarray:
    """Random uint8 HxWx3 pixels with an object-like block, so that masks are not pure noise."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[20:60, 30:80] = (200, 60, 40)
    return img


def target(h: int = 90, w: int = 120) -> np.ndarray:
    """The block of :func:`image` as an int8 target."""
    t = np.zeros((h, w), np.int8)
    t[20:60, 30:80] = 1
    return t


def plain_loop(predictor: Any, img: np.ndarray, tgt: np.ndarray, n_clicks: int, box=None):
    """The reference: ``predictor.set_image`` + ``predict`` per click (``SamPredictor`` or
    ``SAM2ImagePredictor``), SegAgent's recipe written out by hand.

    Returns:
        ``(clicks, [(mask, low-res logits) per click], [number of masks decoded per click])``.
    """
    predictor.set_image(img)
    user, clicks, logits, masks, n_masks = RobotUser(tgt), [], None, [], []
    mask = np.zeros(tgt.shape, bool)
    xyxy = None if box is None else np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    for _ in range(n_clicks):
        click = user.click(mask)
        clicks.append(click)
        out, scores, low = predictor.predict(
            point_coords=np.array([[c.x, c.y] for c in clicks], float),
            point_labels=np.array([int(c.positive) for c in clicks]),
            box=xyxy,
            mask_input=logits,
            multimask_output=len(clicks) == 1 and box is None,
        )
        best = int(np.argmax(scores))
        mask, logits = out[best], low[best][None]
        masks.append((mask, logits))
        n_masks.append(len(scores))
    return clicks, masks, n_masks


class StubDefault:
    """Stands in for the default segmenter in the ``"auto"`` tests."""

    name = "default"

    def set_image(self, img):
        """Nothing to do."""

    def predict(self, clicks, prev=None, box=None):
        """An empty 1x1 mask."""
        return Prediction(np.zeros((1, 1), bool))


def check_encoder_runs_once_per_image(seg: Any, encoder: Any) -> None:
    """Three episodes on each of two images encode each image once (cache: 2 misses, 4 hits)."""
    calls = []
    encoder.register_forward_hook(lambda *a: calls.append(1))
    a, b = image(1), image(2)
    for _episode in range(3):
        for img in (a, b):
            seg.set_image(img)
            prev = None
            for k in range(3):
                prev = seg.predict([Click(40 + k, 30, True), Click(10, 10 + k, False)][: k + 1], prev)
    assert len(calls) == 2
    assert seg.cache.misses == 2 and seg.cache.hits == 4


def check_predict_batch_equals_sequential(seg: Any, decoder: Any, full_logits: Callable) -> None:
    """Candidates of two lengths: one decoder call per length, results equal to ``predict`` one by one
    (masks compared away from pixels whose full-size logit ``full_logits(logits)`` is within 1e-3 of 0)."""
    seg.set_image(image(3))
    base = [Click(50, 40, True)]
    prev = seg.predict(base)
    candidates = [base + [Click(x, y, pos)] for x, y, pos in [(35, 25, True), (5, 5, False), (70, 50, True)]]
    candidates.append(base)  # another length: its own group, single-click multimask rule
    calls = []
    handle = decoder.register_forward_hook(lambda *a: calls.append(1))
    batch = seg.predict_batch(candidates, prev)
    handle.remove()
    assert len(calls) == 2  # one call per distinct click count
    for cand, got in zip(candidates, batch):
        want = seg.predict(cand, prev)
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
        assert got.score == pytest.approx(want.score, abs=1e-5)
        unsure = np.abs(full_logits(want.logits)) < 1e-3
        assert np.array_equal(got.mask[~unsure], want.mask[~unsure])


def check_mask_prior_and_no_prompt(seg: Any) -> None:
    """A prediction without logits (a degraded start mask) conditions the model through its mask; with no
    click and no box nothing is decoded (an empty mask). ``seg`` has an image set."""
    prior = Prediction(target().astype(bool))
    with_prior, without = seg.predict([Click(50, 40, True)], prior), seg.predict([Click(50, 40, True)])
    assert not np.allclose(with_prior.logits, without.logits)
    assert not seg.predict([], None).mask.any()


def check_disk_cache_round_trip(make: Callable[[Any], Any], folder) -> None:
    """A second segmenter on the same cache folder reads the features from disk (no encoder call) and
    predicts the same logits. ``make(cache_dir)`` builds a segmenter."""
    img = image(6)
    first = make(folder)
    first.set_image(img)
    files = list(folder.glob("*.npy"))
    assert len(files) == 1 and not list(folder.glob("*.tmp"))
    second = make(folder)
    calls = []
    second.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    second.set_image(img)
    assert calls == [] and second.cache.disk_hits == 1
    clicks = [Click(50, 40, True)]
    np.testing.assert_array_equal(first.predict(clicks).logits, second.predict(clicks).logits)


def check_env_runs(env: Any, seg_type: type) -> None:
    """Three episodes on samples 0, 1, 0 of ``env``: valid steps, and sample 0's features reused."""
    seg = env.unwrapped.segmenter
    assert isinstance(seg, seg_type)
    calls = []
    seg.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    for index in (0, 1, 0):  # coming back to image 0 reuses its features
        env.reset(seed=0, options={"index": index})
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
            assert obs["mask"].shape == (env.unwrapped.obs_size, env.unwrapped.obs_size, 1)
            assert 0.0 <= info["iou"] <= 1.0 and np.isfinite(reward)
            if terminated or truncated:
                break
    assert len(calls) == 2 and seg.cache.misses == 2 and seg.cache.hits == 1


def check_import_is_light(modules: tuple[str, ...]) -> None:
    """``import hlmat_env`` in a fresh interpreter imports none of ``modules``."""
    code = f"import sys, hlmat_env; print(*[m in sys.modules for m in {list(modules)!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * len(modules)

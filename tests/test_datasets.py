"""Datasets: the embedded synthetic scenes and the folder layout (GrabCut), specs and errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hlmat_env import DatasetError, make_dataset
from hlmat_env.datasets.folder import FolderDataset, mask_to_target
from hlmat_env.datasets.synthetic import COLOURS, SHAPES, SyntheticDataset
from hlmat_env.errors import UnknownName
from hlmat_env.metrics import iou


def test_synthetic_is_deterministic_and_splits_differ():
    a, b = SyntheticDataset("val"), SyntheticDataset("val")
    s1, s2 = a[5], b[5]
    assert (s1.image == s2.image).all() and (s1.target == s2.target).all() and s1.caption == s2.caption
    t = SyntheticDataset("train")[5]
    assert not np.array_equal(t.image, s1.image)
    assert len(SyntheticDataset("train")) == 2000 and len(a) == 200
    ids = {a.sample_id(i) for i in range(len(a))} | {t.sample_id}
    assert len(ids) == 201


def test_synthetic_samples_are_well_formed_and_varied():
    ds = SyntheticDataset("val", size=40)
    captions = set()
    for s in ds:
        assert s.image.dtype == np.uint8 and s.image.shape == (120, 160, 3)
        assert s.target.dtype == np.int8 and 60 <= (s.target > 0).sum() < 0.5 * s.target.size
        assert s.caption.startswith("the ") and any(sh in s.caption for sh in SHAPES)
        captions.add(s.caption)
    assert len(captions) >= 30
    assert any(w in " ".join(captions) for w in ("left of", "right of", "above", "below"))


def test_synthetic_is_not_solved_by_colour_thresholding():
    """The best colour threshold around the target's own mean colour (an oracle-informed threshold) must
    still be far from the target, because of same-colour distractors, texture and noise."""
    ds = SyntheticDataset("val", size=40)
    scores = []
    for s in ds:
        img = s.image.astype(np.float32)
        mean = img[s.target > 0].mean(0)
        dist = np.linalg.norm(img - mean, axis=2)
        scores.append(max(iou(dist < t, s.target) for t in (10, 20, 30, 45, 60, 80)))
    assert np.mean(scores) < 0.7, np.mean(scores)


def test_synthetic_uses_many_colours():
    ds = SyntheticDataset("val", size=60)
    words = " ".join(s.caption for s in ds).split()
    assert len({w for w in words if w in COLOURS}) >= 6


def test_specs_and_errors(tmp_path):
    assert make_dataset("synthetic:val").name == "synthetic:val"
    assert len(make_dataset("synthetic")) == 2000
    with pytest.raises(UnknownName, match="Did you mean 'synthetic'"):
        make_dataset("synthetc")
    with pytest.raises(DatasetError):
        make_dataset("synthetic:test")
    with pytest.raises(DatasetError, match="not found"):
        make_dataset(f"folder:{tmp_path / 'missing'}")


def test_folder_layout_and_corrupt_files(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((8, 10), np.uint8)
    mask[2:6, 2:6] = 255
    mask[2, 2] = 128
    Image.fromarray(img).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    (tmp_path / "images" / "b.png").write_bytes(b"not an image")
    Image.fromarray(mask).save(tmp_path / "masks" / "b.png")
    ds = FolderDataset(tmp_path)
    assert len(ds) == 2 and ds.sample_id(0) == "a"
    s = ds[0]
    assert s.target[2, 2] == -1 and s.target[3, 3] == 1 and s.target[0, 0] == 0
    with pytest.raises(DatasetError, match="b.png"):
        ds[1]


def test_mask_value_conventions():
    assert (mask_to_target(np.array([[0, 1]], np.uint8)) == [[0, 1]]).all()
    assert (mask_to_target(np.array([[0, 128, 255, 200]], np.uint8)) == [[0, -1, 1, 1]]).all()


def test_grabcut_folder(grabcut_dir):
    ds = make_dataset(f"folder:{grabcut_dir}")
    assert len(ds) == 50
    s = ds[0]
    assert s.image.ndim == 3 and s.target.shape == s.image.shape[:2]
    assert set(np.unique(s.target)) <= {-1, 0, 1} and (s.target == 1).any()
    assert sum((ds[i].target == -1).any() for i in range(len(ds))) == 42  # the README's count of ignore bands

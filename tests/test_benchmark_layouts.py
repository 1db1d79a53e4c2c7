"""The standard interactive-segmentation sets in their own layouts: a tiny file tree per layout, written here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hlmat_env import DatasetError, make_dataset
from hlmat_env.errors import DatasetWarning

H, W = 12, 16


def _image(path: Path, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def _grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), "L").save(path)


def _palette(path: Path, indices: np.ndarray) -> None:
    """A VOC-style colour-palette PNG (index 255 = void, drawn cream as in VOC)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(indices.astype(np.uint8), "P")
    pal = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0, 0, 0] * 251 + [224, 224, 192]
    im.putpalette(pal)
    im.save(path)


def _band_mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[3:9, 4:12] = 128
    m[4:8, 5:11] = 255
    return m


def test_grabcut_layout_reads_the_128_band_as_ignore(tmp_path):
    root = tmp_path / "GrabCut"
    _image(root / "data_GT" / "banana1.jpg")
    _image(root / "data_GT" / "flower.bmp", 1)
    _grey(root / "boundary_GT" / "banana1.bmp", _band_mask())
    _grey(root / "boundary_GT" / "flower.bmp", _band_mask())
    ds = make_dataset(f"grabcut:{root}")
    assert len(ds) == 2 and [ds.sample_id(i) for i in range(2)] == ["banana1", "flower"]
    s = ds[0]
    assert s.target.dtype == np.int8 and s.target.shape == (H, W)
    assert (s.target == 1).sum() == 24 and (s.target == -1).sum() == 48 - 24
    assert s.image_ref.endswith("banana1.jpg") and ds.files(1)[1].endswith("flower.bmp")
    assert make_dataset(ds.name).sample_id(0) == "banana1"  # the name rebuilds it


def test_berkeley_layout(tmp_path):
    root = tmp_path / "Berkeley"
    _image(root / "images" / "42049.jpg")
    m = np.zeros((H, W), np.uint8)
    m[2:6, 2:6] = 255
    _grey(root / "masks" / "42049.png", m)
    s = make_dataset(f"berkeley:{root}")[0]
    assert s.sample_id == "42049" and (s.target == 1).sum() == 16 and not (s.target == -1).any()


@pytest.mark.parametrize("kind", ["davis", "coco-mval"])
def test_davis_and_coco_mval_layout_any_nonzero_is_the_object(tmp_path, kind):
    root = tmp_path / kind
    _image(root / "img" / "a.jpg")
    _image(root / "img" / "b.jpg", 1)  # no mask: skipped with a warning
    m = np.zeros((H, W), np.uint8)
    m[1:3, 1:4] = 1
    m[5:7, 5:7] = 200
    _grey(root / "gt" / "a.png", m)
    with pytest.warns(DatasetWarning, match="b.jpg"):
        ds = make_dataset(f"{kind}:{root}")
    assert len(ds) == 1 and ds.name == f"{kind}:{root}"
    t = ds[0].target
    assert (t == 1).sum() == 6 + 4 and not (t == -1).any()


def test_pascalvoc_layout_one_sample_per_instance_void_ignored(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for name, seed in (("2007_000032", 0), ("2007_000039", 1), ("2007_000063", 2)):
        _image(root / "JPEGImages" / f"{name}.jpg", seed)
    a = np.zeros((H, W), np.uint8)
    a[1:5, 1:5], a[6:10, 8:14] = 1, 2
    a[0, :] = 255
    _palette(root / "SegmentationObject" / "2007_000032.png", a)
    b = np.zeros((H, W), np.uint8)
    b[2:4, 2:4] = 3
    _palette(root / "SegmentationObject" / "2007_000039.png", b)
    _palette(root / "SegmentationObject" / "2007_000063.png", a)
    split = root / "ImageSets" / "Segmentation"
    split.mkdir(parents=True)
    (split / "val.txt").write_text("2007_000032\n2007_000039\n")
    (split / "train.txt").write_text("2007_000063\n")
    ds = make_dataset(f"pascalvoc:{root}")
    assert [ds.sample_id(i) for i in range(len(ds))] == ["2007_000032#1", "2007_000032#2", "2007_000039#3"]
    s = ds[1]
    assert (s.target == 1).sum() == 24 and (s.target == -1).sum() == W and s.meta["instance"] == 2
    assert not (ds[2].target == -1).any()
    train = make_dataset(f"pascalvoc:{root},train")
    assert len(train) == 2 and train.name == f"pascalvoc:{root},train"
    with pytest.raises(DatasetError, match="split file not found"):
        make_dataset(f"pascalvoc:{root},test")


def test_sbd_layout_reads_gtinst_from_mat_files(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "benchmark_RELEASE" / "dataset"
    seg = np.zeros((H, W), np.uint8)
    seg[1:4, 1:4], seg[6:11, 6:15] = 1, 2
    for name, seed in (("2008_000002", 0), ("2008_000003", 1)):
        _image(root / "img" / f"{name}.jpg", seed)
        (root / "inst").mkdir(parents=True, exist_ok=True)
        savemat(str(root / "inst" / f"{name}.mat"),
                {"GTinst": {"Segmentation": seg, "Boundaries": np.zeros((2, 1), object),
                            "Categories": np.array([[15], [7]], np.uint8)}})
    (root / "val.txt").write_text("2008_000002\n")
    (root / "train.txt").write_text("2008_000002\n2008_000003\n")
    ds = make_dataset(f"sbd:{root}")
    assert [ds.sample_id(i) for i in range(len(ds))] == ["2008_000002#1", "2008_000002#2"]
    assert (ds[0].target == 1).sum() == 9 and (ds[1].target == 1).sum() == 45
    assert len(make_dataset(f"sbd:{root},train")) == 4
    (root / "inst" / "2008_000002.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="2008_000002.mat"):
        make_dataset(f"sbd:{root}")


def test_missing_folders_are_named(tmp_path):
    (tmp_path / "data_GT").mkdir()
    with pytest.raises(DatasetError, match="boundary_GT"):
        make_dataset(f"grabcut:{tmp_path}")
    with pytest.raises(DatasetError, match="needs a path"):
        make_dataset("sbd")

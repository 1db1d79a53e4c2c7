"""COCO, RefCOCO (refer layout) and SegAgent JSON loaders, on small files written in the real formats."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from hlmat_env.datasets import make_dataset
from hlmat_env.errors import DatasetError
from hlmat_env.masks import encode_rle

H, W = 40, 60


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def _rle_mask():
    m = np.zeros((H, W), bool)
    m[5:15, 30:50] = True
    return m


def _instances(file_name="a.jpg"):
    rle = encode_rle(_rle_mask())
    uncompressed = {"size": [H, W], "counts": [0, H * W // 2, H * W - H * W // 2]}  # left half (column-major)
    return {
        "images": [{"id": 7, "file_name": file_name, "height": H, "width": W}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 101, "image_id": 7, "category_id": 1, "iscrowd": 0,
             "segmentation": [[10, 10, 20, 10, 20, 30, 10, 30]], "area": 200, "bbox": [10, 10, 10, 20]},
            {"id": 102, "image_id": 7, "category_id": 2, "iscrowd": 0, "segmentation": rle,
             "area": 200, "bbox": [30, 5, 20, 10]},
            {"id": 103, "image_id": 7, "category_id": 2, "iscrowd": 1, "segmentation": uncompressed,
             "area": 1200, "bbox": [0, 0, 30, 40]},
        ],
    }


@pytest.fixture
def coco_dir(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(_instances()))
    _image(tmp_path / "val2017" / "a.jpg")
    return tmp_path


def test_coco_polygon_and_rle(coco_dir):
    ds = make_dataset(f"coco:{coco_dir / 'annotations' / 'instances_val2017.json'}")
    assert len(ds) == 2  # the crowd annotation is left out by default
    poly, rle = ds[0], ds[1]
    assert (poly.sample_id, poly.caption, rle.caption) == ("coco-101", "dog", "cat")
    assert poly.image.shape == (H, W, 3) and poly.target.dtype == np.int8
    ys, xs = np.nonzero(poly.target)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 19, 10, 29)  # pycocotools: area 10 x 20 = 200
    assert poly.target.sum() == 200
    np.testing.assert_array_equal(rle.target.astype(bool), _rle_mask())
    assert ds.sample_id(1) == "coco-102" and poly.meta["image_id"] == 7


def test_coco_crowd_uncompressed_rle_and_images_option(coco_dir, tmp_path):
    other = tmp_path / "elsewhere"
    _image(other / "a.jpg", seed=1)
    ann = coco_dir / "annotations" / "instances_val2017.json"
    ds = make_dataset(f"coco:{ann}?images={other}&crowd=1")
    assert len(ds) == 3
    crowd = ds[2]
    assert crowd.image_ref == str(other / "a.jpg")
    assert crowd.target[:, : W // 2].all() and not crowd.target[:, W // 2 :].any()


def test_coco_corrupt_image_names_file(coco_dir):
    bad = coco_dir / "val2017" / "a.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = make_dataset(f"coco:{coco_dir / 'annotations' / 'instances_val2017.json'}")
    with pytest.raises(DatasetError, match="a.jpg"):
        ds[0]


def test_coco_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        make_dataset(f"coco:{tmp_path / 'missing.json'}")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(DatasetError, match="x.json"):
        make_dataset(f"coco:{tmp_path / 'x.json'}")
    with pytest.raises(DatasetError, match="bad option"):
        make_dataset(f"coco:{tmp_path / 'x.json'}?imgs=foo")


def _refer_root(tmp_path, splits=("train", "val")):
    root = tmp_path / "refer"
    (root / "refcoco").mkdir(parents=True)
    (root / "refcoco" / "instances.json").write_text(
        json.dumps(_instances("COCO_train2014_000000000007.jpg")))
    refs = []
    for i, (split, ann) in enumerate(zip(splits, (101, 102))):
        sents = [{"sent": f"the thing {i} {k}", "tokens": ["the", "thing"], "raw": f"The thing {i} {k}.",
                  "sent_id": 10 * i + k} for k in range(2)]
        refs.append({"ref_id": i, "ann_id": ann, "image_id": 7, "split": split, "sentences": sents,
                     "category_id": 1, "file_name": f"COCO_train2014_000000000007_{ann}.jpg", "sent_ids": [10 * i, 10 * i + 1]})
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    _image(root / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000007.jpg")
    return root


def test_refcoco_each_sentence_is_a_sample(tmp_path):
    root = _refer_root(tmp_path)
    ds = make_dataset(f"refcoco:{root}")  # defaults: refcoco, unc, train
    assert len(ds) == 2
    s = ds[1]
    assert s.caption == "the thing 0 1" and s.sample_id == "refcoco-unc-0-1"
    ys, xs = np.nonzero(s.target)
    assert (xs.min(), ys.min()) == (10, 10)
    val = make_dataset(f"refcoco:{root},refcoco,unc,val")
    assert len(val) == 2 and val[0].meta["ann_id"] == 102
    np.testing.assert_array_equal(val[0].target.astype(bool), _rle_mask())
    assert len(make_dataset(f"refcoco:{root},refcoco,unc,all")) == 4


def test_refcoco_errors(tmp_path):
    root = _refer_root(tmp_path)
    with pytest.raises(DatasetError, match="testB"):
        make_dataset(f"refcoco:{root},refcoco,unc,testB")
    with pytest.raises(DatasetError, match=r"refs\(umd\)\.p"):
        make_dataset(f"refcoco:{root},refcocog")
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:  # a pickle that would build an object
        pickle.dump([np.zeros(1)], f)
    with pytest.raises(DatasetError, match="refusing"):
        make_dataset(f"refcoco:{root}")


def test_segagent_json_as_dataset(tmp_path):
    _image(tmp_path / "imgs" / "pic.jpg")
    m = _rle_mask()
    rle = encode_rle(m)
    doc = {"info": {}, "data": [{"image_name": "pic", "height": H, "width": W,
                                 "gt_ann": {"object_id": 3, "caption": ["a cat", "the cat"], "segmentation": rle,
                                            "bbox": [30, 5, 20, 10], "area": int(m.sum())},
                                 "clicks_list": [{"idx": 0, "coor": [10, 40], "is_positive": True, "mask": rle,
                                                  "box": [30, 5, 20, 10], "area": int(m.sum()), "iou": 1.0}]}]}
    (tmp_path / "traj.json").write_text(json.dumps(doc))
    ds = make_dataset(f"segagent:{tmp_path / 'traj.json'}?images={tmp_path / 'imgs'}")
    assert len(ds) == 2 and [ds[i].caption for i in range(2)] == ["a cat", "the cat"]
    assert ds.sample_id(0) == "pic-3-0"
    np.testing.assert_array_equal(ds[0].target.astype(bool), m)
    assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == m.sum()


def test_grabcut_folder_spec(grabcut_dir):
    ds = make_dataset(f"folder:{grabcut_dir}")
    assert len(ds) == 50
    s = ds[0]
    assert s.image.shape[:2] == s.target.shape and (s.target == 1).any()
    assert set(np.unique(s.target)) <= {-1, 0, 1} and s.sample_id == ds.sample_id(0)

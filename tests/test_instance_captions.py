"""Captions generated from instance labels: constructed layouts, determinism, plurals and the coco/folder options."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hlmat_env.datasets import make_dataset
from hlmat_env.datasets.instance_captions import (caption_stats, describe_group, describe_instances, number_word,
                                                  plural)
from hlmat_env.errors import DatasetError

COCO128 = Path("/work/shared/data/coco128_seg")


def _texts(category, boxes, areas=None):
    return [c.text for c in describe_group(category, boxes, areas)]


def _box_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_lone_instance_is_the_category():
    caps = describe_instances([("dog", [10, 10, 20, 20], None), ("cat", [50, 10, 20, 20], None)])
    assert [(c.text, c.unambiguous, c.how) for c in caps] == [("the dog", True, "lone"), ("the cat", True, "lone")]


def test_two_side_by_side_left_right():
    caps = describe_group("dog", [[60, 10, 20, 20], [10, 12, 20, 20]])
    assert [c.text for c in caps] == ["the dog on the right", "the dog on the left"]
    assert all(c.unambiguous for c in caps) and len({c.text for c in caps}) == 2


def test_two_stacked_top_bottom_with_masks():
    masks = [_box_mask(100, 100, 40, 60, 60, 80), _box_mask(100, 100, 42, 5, 58, 25)]
    caps = describe_group("cup", masks)
    assert [c.text for c in caps] == ["the cup at the bottom", "the cup at the top"]
    assert all(c.unambiguous for c in caps)


def test_the_axis_that_separates_best_wins():
    # 30 px apart horizontally, 60 px vertically: top/bottom separates better
    assert _texts("cat", [[0, 0, 20, 20], [30, 60, 20, 20]]) == ["the cat at the top", "the cat at the bottom"]


def test_three_in_a_row():
    caps = describe_group("person", [[50, 0, 20, 40], [0, 0, 20, 40], [100, 0, 20, 40]])
    assert [c.text for c in caps] == ["the middle one of the three people", "the leftmost of the three people",
                                      "the rightmost of the three people"]
    assert all(c.unambiguous for c in caps)


def test_three_in_a_column():
    assert _texts("cup", [[0, 0, 10, 10], [0, 30, 10, 10], [0, 60, 10, 10]]) == [
        "the top one of the three cups", "the middle one of the three cups", "the bottom one of the three cups"]


def test_middle_is_not_used_when_the_other_axis_has_another_middle():
    # x order a, b, c; y order a, c, b: "the middle one" could mean b (x) or c (y)
    texts = _texts("car", [[0, 0, 10, 10], [20, 40, 10, 10], [40, 20, 10, 10]])
    assert texts == ["the leftmost of the three cars", "the bottom one of the three cars",
                     "the rightmost of the three cars"]


def test_many_in_a_row_get_ordinals_from_the_nearer_end():
    texts = _texts("car", [[i * 20, 0, 10, 10] for i in range(5)])
    assert texts == ["the leftmost of the five cars", "the second car from the left",
                     "the middle one of the five cars",
                     "the second car from the right", "the rightmost of the five cars"]


def test_same_place_different_sizes():
    caps = describe_group("cup", [[0, 0, 30, 30], [5, 5, 20, 20]], [900, 400])
    assert [c.text for c in caps] == ["the larger of the two cups", "the smaller of the two cups"]
    assert [c.how for c in caps] == ["size", "size"]
    caps3 = describe_group("sheep", [[0, 0, 30, 30], [2, 2, 25, 25], [4, 4, 10, 10]], [900, 625, 100])
    assert caps3[2].text == "the smallest of the three sheep" and caps3[2].unambiguous
    assert not caps3[0].unambiguous and not caps3[1].unambiguous  # 900 vs 625: too close to call


def test_indistinguishable_instances_are_flagged():
    caps = describe_group("cat", [[0, 0, 20, 20], [3, 2, 20, 20]])
    assert [(c.text, c.unambiguous, c.how) for c in caps] == [("one of the two cats", False, "fallback")] * 2


def test_partial_separation_names_only_the_separated_instance():
    # two cats overlap, a third stands apart on the right
    caps = describe_group("cat", [[0, 0, 20, 20], [4, 0, 20, 20], [80, 0, 20, 20]])
    assert caps[2].text == "the rightmost of the three cats" and caps[2].unambiguous
    assert not caps[0].unambiguous and not caps[1].unambiguous
    assert caps[0].text == caps[1].text == "one of the three cats"


def test_unambiguous_captions_are_unique_on_random_layouts():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 8))
        boxes = [[*rng.uniform(0, 300, 2), *rng.uniform(5, 80, 2)] for _ in range(n)]
        caps = describe_group("dog", boxes)
        clear = [c.text for c in caps if c.unambiguous]
        assert len(clear) == len(set(clear))
        assert not set(clear) & {c.text for c in caps if not c.unambiguous}


def test_deterministic():
    boxes = [[0, 0, 20, 20], [3, 2, 20, 20], [50, 0, 20, 20], [0, 80, 10, 10]]
    first = describe_group("dog", boxes)
    assert all(describe_group("dog", boxes) == first for _ in range(5))


def test_plurals():
    assert [plural(n) for n in ("person", "mouse", "knife", "sheep", "skis", "scissors", "bus", "bench",
                                "wine glass", "dining table", "toothbrush", "teddy bear", "sandwich", "couch",
                                "cell phone", "hair drier", "pizza")] == [
        "people", "mice", "knives", "sheep", "pairs of skis", "pairs of scissors", "buses", "benches",
        "wine glasses", "dining tables", "toothbrushes", "teddy bears", "sandwiches", "couches", "cell phones",
        "hair driers", "pizzas"]
    assert number_word(3) == "three" and number_word(14) == "14"


def _tiny_coco(tmp_path, crowd_cat=None):
    h, w = 40, 80
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "a.jpg")
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100, "bbox": [50, 10, 10, 10],
             "segmentation": [[50, 10, 60, 10, 60, 20, 50, 20]]},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100, "bbox": [5, 10, 10, 10],
             "segmentation": [[5, 10, 15, 10, 15, 20, 5, 20]]},
            {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 4,
             "segmentation": [[30, 30, 32, 30, 32, 32, 30, 32]]}]  # no bbox: the mask is decoded
    if crowd_cat:
        anns.append({"id": 4, "image_id": 1, "category_id": crowd_cat, "iscrowd": 1, "area": 50,
                     "bbox": [0, 0, 5, 10], "segmentation": [[0, 0, 5, 0, 5, 10, 0, 10]]})
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": h, "width": w}],
           "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "person"}], "annotations": anns}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    return tmp_path / "ann.json"


def test_coco_generated_option(tmp_path):
    ann = _tiny_coco(tmp_path)
    ds = make_dataset(f"coco:{ann}?captions=generated")
    assert [s.caption for s in ds] == ["the dog on the right", "the dog on the left", "the person"]
    assert ds[0].meta["caption_unambiguous"] is True and ds[0].meta["caption_how"] == "spatial"
    assert make_dataset(f"coco:{ann}")[0].caption == "dog"  # default: the category name
    assert "captions=generated" in ds.name
    assert caption_stats(ds)["share"] == 1.0
    with pytest.raises(DatasetError, match="captions"):
        make_dataset(f"coco:{ann}?captions=fancy")
    with pytest.raises(DatasetError, match="generated"):
        make_dataset(f"coco:{ann}").generated_caption(0)


def test_coco_crowd_regions(tmp_path):
    ann = _tiny_coco(tmp_path, crowd_cat=1)
    ds = make_dataset(f"coco:{ann}?captions=generated&crowd=1")
    caps = [ds.generated_caption(i) for i in range(len(ds))]
    assert [c.text for c in caps] == ["the dog on the right", "the dog on the left", "the person",
                                      "the group of dogs"]
    assert [c.unambiguous for c in caps] == [False, False, True, True]  # a dog crowd may hold more dogs


def _folder(tmp_path, rows):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for stem, cls, img, box in rows:
        Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "images" / f"{stem}.jpg")
        Image.fromarray(_box_mask(40, 80, *box).astype(np.uint8) * 255).save(tmp_path / "masks" / f"{stem}.png")
    with open(tmp_path / "meta.jsonl", "w") as f:
        for stem, cls, img, _ in rows:
            f.write(json.dumps({"stem": stem, "category": cls, "coco_val2017_image_id": img}) + "\n")
    return tmp_path


def test_folder_class_captions(tmp_path):
    root = _folder(tmp_path, [("a", "dog", 1, (50, 10, 60, 20)), ("b", "dog", 1, (5, 10, 15, 20)),
                              ("c", "hot_dog", 2, (5, 10, 15, 20))])
    ds = make_dataset(f"folder:{root}?captions=class")
    assert [s.caption for s in ds] == ["the dog on the right", "the dog on the left", "the hot dog"]
    assert ds[2].meta["caption_unambiguous"] is True
    assert make_dataset(f"folder:{root}")[0].caption == ""
    assert caption_stats(ds)["instances"] == 3
    assert [s.caption for s in make_dataset(f"folder:{root}?captions=generated")] == [s.caption for s in ds]
    with pytest.raises(DatasetError, match="captions"):
        make_dataset(f"folder:{root}?captions=fancy")


def test_folder_class_captions_need_meta(tmp_path):
    root = _folder(tmp_path, [("a", "dog", 1, (5, 10, 15, 20))])
    (root / "meta.jsonl").unlink()
    with pytest.raises(DatasetError, match="meta.jsonl"):
        make_dataset(f"folder:{root}?captions=class")


@pytest.mark.skipif(not (COCO128 / "annotations.json").is_file(), reason=f"{COCO128} is not on this machine")
def test_coco128_generated_captions_load():
    ds = make_dataset(f"coco:{COCO128 / 'annotations.json'}?images={COCO128 / 'images'}&captions=generated")
    assert len(ds) > 0
    for i in range(len(ds)):
        assert ds.generated_caption(i).text.startswith(("the ", "one of the "))
    for i in (0, len(ds) // 2, len(ds) - 1):  # a few full loads: pixels and caption together
        s = ds[i]
        assert s.caption == ds.generated_caption(i).text and s.caption
    stats = caption_stats(ds)
    assert stats["instances"] == len(ds) and 0.0 < stats["share"] <= 1.0
    assert caption_stats(ds) == stats  # deterministic


COCO_MVAL = Path("/work/shared/data/coco_mval")


@pytest.mark.skipif(not (COCO_MVAL / "meta.jsonl").is_file(), reason=f"{COCO_MVAL} is not on this machine")
def test_coco_mval_class_captions():
    ds = make_dataset(f"folder:{COCO_MVAL}?captions=class")
    caps = [ds.generated_caption(i) for i in range(len(ds))]
    assert all(c.text.startswith(("the ", "one of the ")) for c in caps)
    several = [c for c in caps if c.group_size > 1]
    assert several and any(c.how == "spatial" for c in several)
    assert ds[0].caption == caps[0].text and ds[0].meta["class"]

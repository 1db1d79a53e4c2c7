"""Regression tests of issue #22's eleven input defects, one test per defect, named after its number."""
from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import hlmat_env  # noqa: F401  (registers the env)
from hlmat_env.actions import Click
from hlmat_env.datasets import make_dataset
from hlmat_env.datasets.synthetic import SyntheticDataset
from hlmat_env.errors import DatasetError, DatasetWarning, EmptyTarget, HLMATError, InvalidAction, InvalidOption
from hlmat_env.wrappers import CoarseClicks
from hlmat_env.wrappers_text import TextActions
from tests.conftest import DiscSegmenter

SMALL = SyntheticDataset("val", size=4)


def _env(**kw):
    return gym.make("HLMATEnv-v0", dataset=kw.pop("dataset", SMALL), segmenter=kw.pop("segmenter", DiscSegmenter()),
                    **kw)


def _folder(root, pairs):
    """Write ``images/`` + ``masks/`` under ``root`` from ``{stem: (image array, mask PIL image or array)}``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for stem, (image, mask) in pairs.items():
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        (mask if isinstance(mask, Image.Image) else Image.fromarray(mask)).save(root / "masks" / f"{stem}.png")
    return root


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_defect_01_async_vector_env_gives_the_real_captions():
    kw = dict(num_envs=2, dataset="synthetic:val", segmenter="default", max_clicks=3)
    sync = gym.make_vec("HLMATEnv-v0", vectorization_mode="sync", **kw)
    asyn = gym.make_vec("HLMATEnv-v0", vectorization_mode="async", **kw)  # default vector_kwargs
    try:
        o_s, _ = sync.reset(seed=0)
        o_a, _ = asyn.reset(seed=0)
        seen = []
        for t in range(4):
            assert tuple(o_a["caption"]) == tuple(o_s["caption"]), t
            assert all(c and "\t" not in c for c in o_a["caption"])
            seen.append(tuple(o_a["caption"]))
            action = np.array([[0, 500, 500], [2, 0, 0]]) if t % 2 else np.array([[2, 0, 0], [0, 400, 600]])
            o_s, *_ = sync.step(action)
            o_a, *_ = asyn.step(action)
        assert len(set(seen)) > 1  # finishes autoreset new samples: the captions change and are read again
    finally:
        sync.close()
        asyn.close()


@pytest.mark.parametrize("policy,first", [("terminate", "click somewhere"), ("continue", "Finish")])
def test_defect_02_text_actions_stop_after_the_end(policy, first):
    env = TextActions(_env(), "qwen2", on_invalid=policy)
    env.reset(seed=0, options={"index": 0})
    _, _, term, trunc, _ = env.step(first)
    assert term
    for text in ("Positive point: (500, 500)", "Finish", "junk"):
        with pytest.raises(HLMATError, match="reset"):
            env.step(text)
    assert env.unwrapped.clicks == []  # no click was placed after the end
    env.reset(seed=0, options={"index": 0})
    _, _, term, _, info = env.step("Positive point: (500, 500)")
    assert not term and info["num_clicks"] == 1
    # "continue" ends by truncation after max_invalid invalid texts: the end holds as well
    env = TextActions(_env(), "qwen2", on_invalid="continue", max_invalid=2)
    env.reset(seed=0)
    assert env.step("x")[3] is False and env.step("y")[3] is True
    with pytest.raises(HLMATError):
        env.step("Positive point: (500, 500)")


@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 2), (3, 1)])
def test_defect_03_tiny_images_with_the_default_segmenter(tmp_path, shape):
    mask = np.zeros(shape, np.uint8)
    mask[0, 0] = 255
    root = _folder(tmp_path, {"tiny": (_noise(*shape), mask)})
    env = _env(dataset=f"folder:{root}", segmenter="default", max_clicks=3)
    for start in ("empty", "box", "degraded"):
        env.reset(seed=0, options={"start": start})
        term = trunc = False
        while not (term or trunc):
            _, _, term, trunc, info = env.step(env.unwrapped.expert_action())
        assert 0.0 <= info["iou"] <= 1.0 and env.unwrapped.mask.shape == shape


def test_defect_04_rgb_masks_are_read_by_their_first_channel(tmp_path):
    red = np.zeros((10, 12, 3), np.uint8)
    red[2:6, 3:8] = (255, 0, 0)
    berkeley = np.zeros((10, 12, 3), np.uint8)
    berkeley[2:6, 3:8] = 255
    berkeley[3, 4] = (255, 0, 255)  # a few magenta object pixels
    rgba = np.dstack([red, np.zeros((10, 12), np.uint8)])  # alpha ignored
    root = _folder(tmp_path, {"red": (_noise(10, 12), red), "berkeley": (_noise(10, 12), berkeley),
                              "rgba": (_noise(10, 12), rgba)})
    ds = make_dataset(f"folder:{root}")
    expected = np.zeros((10, 12), np.int8)
    expected[2:6, 3:8] = 1
    for i in range(3):
        np.testing.assert_array_equal(ds[i].target, expected, err_msg=ds.sample_id(i))
    env = _env(dataset=ds)
    _, info = env.reset(seed=0)
    assert info["iou"] == 0.0  # a real target: the empty start mask does not score 1.0
    # an object the first channel does not see, or no object at all, is refused, never an empty target
    green = np.zeros((10, 12, 3), np.uint8)
    green[2:6, 3:8] = (0, 255, 0)
    bad = _folder(tmp_path / "bad", {"green": (_noise(10, 12), green), "black": (_noise(10, 12), green[..., 0])})
    ds = make_dataset(f"folder:{bad}")
    for i, name in enumerate(["black.png", "green.png"]):
        with pytest.raises(EmptyTarget, match=name):
            ds[i]


def test_defect_05_voc_masks(tmp_path):
    labels = np.zeros((10, 12), np.uint8)
    labels[2:6, 3:8] = 1
    labels[1, :] = 255  # the void border
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]
    pal = Image.fromarray(labels, "P")
    pal.putpalette(palette)
    two = labels.copy()
    two[8, 8] = 2
    pal2 = Image.fromarray(two, "P")
    pal2.putpalette(palette)
    root = _folder(tmp_path, {"a_grey": (_noise(10, 12), labels), "b_palette": (_noise(10, 12), pal),
                              "c_two_objects": (_noise(10, 12), pal2), "d_two_grey": (_noise(10, 12), two)})
    ds = make_dataset(f"folder:{root}")
    for i in (0, 1):
        t = ds[i].target
        assert (t[2:6, 3:8] == 1).all() and (t[1] == -1).all() and t.sum() == 20 - 12 and (t == 1).sum() == 20
    with pytest.raises(DatasetError, match=r"c_two_objects\.png.*\[1, 2\]"):
        ds[2]
    with pytest.raises(DatasetError, match=r"d_two_grey\.png.*\[1, 2\]"):
        ds[3]


def test_defect_06_folder_orphans_and_duplicates_are_reported(tmp_path):
    m = np.zeros((6, 6), np.uint8)
    m[1:4, 1:4] = 255
    root = _folder(tmp_path, {"pair": (_noise(6, 6), m), "dup": (_noise(6, 6), m)})
    Image.fromarray(_noise(6, 6, 1)).save(root / "images" / "dup.jpg")
    Image.fromarray(_noise(6, 6)).save(root / "images" / "no_mask.png")
    Image.fromarray(m).save(root / "masks" / "no_image.png")
    with pytest.warns(DatasetWarning) as record:
        ds = make_dataset(f"folder:{root}")
    text = " ".join(str(w.message) for w in record)
    assert "no_mask.png" in text and "no_image.png" in text and "dup.jpg" in text and "dup.png" in text
    assert len(ds) == 2 and ds.images["dup"].name == "dup.png"
    assert [p.name for p in ds.orphan_images] == ["no_mask.png"] and [p.name for p in ds.orphan_masks] == ["no_image.png"]
    with pytest.raises(DatasetError, match="no_mask.png"):
        make_dataset(f"folder:{root}?strict=1")
    clean = _folder(tmp_path / "clean", {"pair": (_noise(6, 6), m)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_dataset(f"folder:{clean}?strict=1")


@pytest.mark.parametrize("bad", [np.array([0.0, np.inf, 5.0]), np.array([0.0, np.nan, 5.0]),
                                 np.array([0, 1, 2], dtype="m8"), np.array([1e300, 0.0, 0.0]),
                                 np.array([0, 2**63 + 5, 0], dtype=np.uint64), [0, [1], 2]])
def test_defect_07_non_finite_and_odd_dtypes_raise_invalid_action(bad):
    env = _env()
    env.reset(seed=0)
    with pytest.raises(InvalidAction):
        env.step(bad)
    _, _, term, _, info = env.step(np.array([0, 500, 500]))  # still usable
    assert info["num_clicks"] == 1 and not term


@pytest.mark.parametrize("bad", [np.array([2, -5, 99999]), np.array([2, 1000, 0]), np.array([2, 0, -1])])
def test_defect_08_finish_with_out_of_range_bins_is_invalid(bad):
    env = _env()
    env.reset(seed=0)
    assert not env.action_space.contains(bad)
    with pytest.raises(InvalidAction, match="bins"):
        env.step(bad)
    assert env.step(np.array([2, 999, 0]))[2] is True  # finish with in-range bins still finishes


def test_defect_09_refcoco_refs_are_checked_when_the_dataset_is_built(tmp_path):
    from tests.test_datasets_coco import _refer_root

    root = _refer_root(tmp_path)
    refs_file = root / "refcoco" / "refs(unc).p"
    with open(refs_file, "rb") as f:
        refs = pickle.load(f)
    del refs[0]["sentences"][1]["sent_id"]
    with open(refs_file, "wb") as f:
        pickle.dump(refs, f, protocol=2)
    with pytest.raises(DatasetError, match=r"refs\(unc\)\.p.*ref 0 .*sentences\[1\].*sent_id"):
        make_dataset(f"refcoco:{root}")
    refs[0]["sentences"][1]["sent_id"] = 1
    refs[1]["ann_id"] = 999  # a ref whose annotation instances.json lacks
    with open(refs_file, "wb") as f:
        pickle.dump(refs, f, protocol=2)
    with pytest.raises(DatasetError, match=r"ref 1 .*999"):
        make_dataset(f"refcoco:{root},refcoco,unc,all")


def test_defect_11_entry_points_check_their_values():
    for args in [(1.5, 5, True), (5, 5, "no"), (5, 5, 1), (True, 5, True), ("5", 5, True), (np.nan, 5, True)]:
        with pytest.raises(InvalidAction, match="Click"):
            Click(*args)
    c = Click(np.int64(3), np.int32(4), np.bool_(True))
    assert (type(c.x), type(c.y), type(c.positive)) == (int, int, bool)

    env = _env()
    env.reset(seed=0)
    u = env.unwrapped
    for bad in [(3, 4), "click", 5]:
        with pytest.raises(InvalidAction):
            u.click(bad)
    for index in [1.7, "3", True, np.nan, -1, 4, [1]]:
        with pytest.raises(InvalidOption, match="index"):
            env.reset(options={"index": index})
    for options in [{"start": 3}, {"start": "mask"}, {"initial_mask": np.full(u.mask.shape, np.nan)},
                    {"initial_mask": np.zeros((2, 2)), "index": 0}, {"initial_mask": "x"}, {"bogus": 1}, [1]]:
        with pytest.raises(InvalidOption):
            env.reset(options=options)
    _, info = env.reset(options={"index": np.int64(2)})
    assert info["index"] == 2

    for kwargs in [{"undo_radius": np.nan}, {"undo_radius": "2"}, {"max_clicks": True}, {"max_clicks": 2.5},
                   {"obs_size": np.inf}, {"start": ["box"]}]:
        with pytest.raises(InvalidOption, match=next(iter(kwargs))):
            _env(**kwargs)

    grid = CoarseClicks(_env(), grid=4)
    grid.reset(seed=0)
    for bad in [3.7, "5", True, np.float64(3.0), np.nan, None, 33, -1]:
        with pytest.raises(InvalidAction):
            grid.step(bad)
    grid.step(np.int64(3))
    grid.step(np.array([5]))
    assert len(grid.unwrapped.clicks) == 2


def test_defect_10_generate_errors_jsonl_one_record_per_bad_sample(tmp_path):
    import json

    from agents.tools.generate import GenerateConfig, generate
    from tests.test_generate import SlowDisc

    m = np.zeros((12, 16), np.uint8)
    m[3:8, 4:10] = 255
    root = _folder(tmp_path / "data", {"good": (_noise(12, 16), m), "empty": (_noise(12, 16), m * 0),
                                       "two": (_noise(12, 16), (m > 0).astype(np.uint8) + np.eye(12, 16, dtype=np.uint8) * 2)})
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(m).save(root / "masks" / "corrupt.png")
    out = tmp_path / "out"
    cfg = dict(segmenter=SlowDisc(radius=2), starts=("empty", "box"), progress=False)

    def records():
        return [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]

    for resume in (False, True, True):
        report = generate(GenerateConfig(f"folder:{root}", out, resume=resume, **cfg))
        assert report.errors == 6 and len(records()) == 6  # 3 bad samples x 2 starts, each once
    by_id = {r["episode_id"]: r for r in records()}
    assert set(by_id) == {f"{s}#{start}" for s in ("corrupt", "empty", "two") for start in ("empty", "box")}
    for r in by_id.values():
        assert r["sample_id"] == r["episode_id"].split("#")[0] and r["index"] in (0, 1, 3)
        assert r["files"] == [str(root / "images" / f"{r['sample_id']}.png"), str(root / "masks" / f"{r['sample_id']}.png")]
        assert f"{r['sample_id']}.png" in r["error"]
    # a run killed after retrying appended duplicates: the next resume compacts them
    with open(out / "errors.jsonl", "a") as f:
        f.write(json.dumps(by_id["two#box"]) + "\n" + '{"torn": ')
    Image.fromarray(m).save(root / "masks" / "empty.png")  # the empty mask fixed: its episodes leave the file
    report = generate(GenerateConfig(f"folder:{root}", out, resume=True, **cfg))
    assert report.written == 2 and report.errors == 4
    assert sorted(r["episode_id"] for r in records()) == ["corrupt#box", "corrupt#empty", "two#box", "two#empty"]

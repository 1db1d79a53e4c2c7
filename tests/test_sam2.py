"""SAM 2 segmenter: a tiny random-weight model built from sam2's real SAM 2.1 hiera-tiny config, loaded from a
file.

No weights can be downloaded here, so the model is ``build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml")`` with
hydra overrides that shrink it (:func:`tiny_overrides`): a 5-block Hiera trunk of width 8, a 32-wide neck and
SAM heads, a one-layer memory attention/encoder (unused in image mode), and ``image_size`` 256 instead of
1024 (the mask-equality test also runs at 1024). The random state dict is saved in sam2's checkpoint format
``{"model": state_dict}`` and loaded through the segmenter's real path, ``build_sam2(config, checkpoint,
device=..., hydra_overrides_extra=...)``.

``SAM2ImagePredictor`` hard-codes the feature sizes of a 1024 input (``_bb_feat_sizes``); the reference loop
sets them to the shrunk model's sizes when ``image_size`` is 256 and leaves the predictor untouched at 1024.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from sam2.build_sam import build_sam2  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from hlmat_env.actions import Click  # noqa: E402
from hlmat_env.errors import CheckpointError, DependencyNotInstalled, UnknownName  # noqa: E402
from hlmat_env.segmenters import SEGMENTERS, make_segmenter  # noqa: E402
from hlmat_env.segmenters.sam2 import (  # noqa: E402
    SAM2_CONFIGS,
    Sam2Segmenter,
    describe_sam2_state_dict,
    resolve_sam2_config,
)
from tests import sam_family as family  # noqa: E402
from tests.sam_family import image as _image  # noqa: E402
from tests.sam_family import target as _target  # noqa: E402

torch.set_num_threads(1)

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SMALL = 256  # image_size of the shrunk model (official: 1024)


def tiny_overrides(image_size: int = SMALL, d: int = 32) -> list[str]:
    """Hydra overrides that shrink the real hiera-tiny config (widths, depths, and optionally image_size)."""
    return [
        f"++model.image_size={image_size}",
        "++model.image_encoder.trunk.embed_dim=8",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",  # not a stage's first (pooling) block
        "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
        f"++model.image_encoder.neck.d_model={d}",
        "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
        f"++model.image_encoder.neck.position_encoding.num_pos_feats={d}",
        "++model.memory_attention.num_layers=1",
        f"++model.memory_attention.d_model={d}",
        f"++model.memory_attention.layer.d_model={d}",
        "++model.memory_attention.layer.dim_feedforward=32",
        f"++model.memory_attention.layer.self_attention.embedding_dim={d}",
        f"++model.memory_attention.layer.cross_attention.embedding_dim={d}",
        "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
        "++model.memory_encoder.out_dim=16",
        f"++model.memory_encoder.in_dim={d}",
        f"++model.memory_encoder.mask_downsampler.embed_dim={d}",
        f"++model.memory_encoder.fuser.layer.dim={d}",
        "++model.memory_encoder.fuser.num_layers=1",
        "++model.memory_encoder.position_encoding.num_pos_feats=16",
    ]


def _save_tiny(path, image_size: int = SMALL) -> None:
    torch.manual_seed(0)
    model = build_sam2(CONFIG, None, device="cpu", hydra_overrides_extra=tiny_overrides(image_size))
    torch.save({"model": model.state_dict()}, path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam2") / "sam2_tiny.pt"
    _save_tiny(path)
    return path


def _sam2(checkpoint, image_size: int = SMALL, **kw) -> Sam2Segmenter:
    return Sam2Segmenter(sam2_checkpoint=checkpoint, sam2_config="sam2.1_hiera_t",
                         sam2_overrides=tiny_overrides(image_size), device=kw.pop("device", "cpu"), **kw)


def _predictor(model) -> SAM2ImagePredictor:
    predictor = SAM2ImagePredictor(model)
    if model.image_size != 1024:
        s = model.image_size // 4
        predictor._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]
    return predictor


def _plain_loop(model, image, target, n_clicks, box=None):
    """The reference: SAM2ImagePredictor.set_image + predict per click (:func:`tests.sam_family.plain_loop`)."""
    return family.plain_loop(_predictor(model), image, target, n_clicks, box)


@pytest.mark.parametrize("image_size,box", [(SMALL, None), (SMALL, [28, 18, 56, 44]), (1024, None)])
def test_same_masks_as_plain_sam2imagepredictor_loop(checkpoint, tmp_path, image_size, box):
    if image_size != SMALL:
        checkpoint = tmp_path / "sam2_tiny_1024.pt"
        _save_tiny(checkpoint, image_size)
    seg = _sam2(checkpoint, image_size)
    image, target = _image(0), _target()
    clicks, ref, n_masks = _plain_loop(seg.model, image, target, n_clicks=5, box=box)
    assert n_masks[0] == (1 if box else 3) and set(n_masks[1:]) == {1}  # the lone click is multimask
    seg.set_image(image)
    prev = None
    low = image_size // 4
    for k in range(len(clicks)):
        prev = seg.predict(clicks[: k + 1], prev, box=box)
        assert prev.mask.shape == target.shape and prev.mask.dtype == bool
        assert prev.logits.shape == (1, low, low) and prev.logits.dtype == np.float32
        np.testing.assert_array_equal(prev.mask, ref[k][0])
        np.testing.assert_array_equal(prev.logits, ref[k][1])
    assert len({m.tobytes() for m, _ in ref}) > 1, "degenerate test: every step gave the same mask"


def test_lone_click_keeps_the_best_of_three(checkpoint):
    seg = _sam2(checkpoint)
    image = _image(7)
    seg.set_image(image)
    predictor = _predictor(seg.model)
    predictor.set_image(image)
    chosen = set()
    for x, y in [(50, 40), (10, 10), (100, 70), (35, 25), (70, 55), (5, 80)]:
        out, scores, low = predictor.predict(point_coords=np.array([[x, y]], float),
                                             point_labels=np.array([1]))
        best = int(np.argmax(scores))
        got = seg.predict([Click(x, y, True)])
        np.testing.assert_array_equal(got.mask, out[best])
        np.testing.assert_array_equal(got.logits, low[best][None])
        assert got.score == pytest.approx(float(scores[best]))
        chosen.add(best)
    assert chosen != {0}, "degenerate test: the first of the three masks always won"


def test_encoder_runs_once_per_image_across_episodes(checkpoint):
    seg = _sam2(checkpoint)
    family.check_encoder_runs_once_per_image(seg, seg.model.image_encoder)


def test_predict_batch_equals_sequential_in_one_decoder_call(checkpoint):
    seg = _sam2(checkpoint)

    def full_logits(logits):
        return seg.transforms.postprocess_masks(torch.as_tensor(logits[None]), seg._image_hw)[0, 0].numpy()

    family.check_predict_batch_equals_sequential(seg, seg.model.sam_mask_decoder, full_logits)


def test_box_prompt_and_mask_prior(checkpoint):
    seg = _sam2(checkpoint)
    image = _image(4)
    seg.set_image(image)
    box = [30, 20, 50, 40]
    p0 = seg.predict([], None, box=box)
    predictor = _predictor(seg.model)
    predictor.set_image(image)
    out, scores, low = predictor.predict(box=np.array([30, 20, 80, 60]), multimask_output=False)
    np.testing.assert_array_equal(p0.mask, out[0])
    assert p0.score == pytest.approx(float(scores[0]))
    p1 = seg.predict([Click(50, 40, True)], p0, box=box)
    assert p1.mask.shape == (90, 120)
    family.check_mask_prior_and_no_prompt(seg)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        seg.set_image(image[..., 0])


def test_disk_cache_round_trip(checkpoint, tmp_path):
    family.check_disk_cache_round_trip(lambda folder: _sam2(checkpoint, sam2_cache_dir=folder),
                                       tmp_path / "emb")


def test_missing_and_mismatched_checkpoints(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist.*sam2\.1_hiera_tiny\.pt"):
        Sam2Segmenter(sam2_checkpoint=tmp_path / "nope.pt", sam2_config="sam2.1_hiera_tiny", device="cpu")
    monkeypatch.delenv("HLMAT_SAM2_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError, match="HLMAT_SAM2_CHECKPOINT"):
        make_segmenter("sam2", device="cpu")
    monkeypatch.setenv("HLMAT_SAM2_CHECKPOINT", str(tmp_path / "from_env.pt"))
    with pytest.raises(CheckpointError, match=r"from_env\.pt"):
        make_segmenter("sam2", device="cpu")
    with pytest.raises(CheckpointError, match=r"cannot tell the SAM 2 config of .*sam2_tiny\.pt.*width 8"):
        Sam2Segmenter(sam2_checkpoint=checkpoint, device="cpu")
    with pytest.raises(UnknownName, match="sam2.1_hiera_tiny"):
        Sam2Segmenter(sam2_checkpoint=checkpoint, sam2_config="sam2.1_hiera_tinny", device="cpu")
    # same config, other widths: build_sam2's load_state_dict fails, reported with the file
    with pytest.raises(CheckpointError, match=r"sam2_tiny\.pt does not match sam2_config 'sam2.1_hiera_tiny"):
        Sam2Segmenter(sam2_checkpoint=checkpoint, sam2_config=CONFIG, sam2_overrides=tiny_overrides(d=16),
                      device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read SAM 2 checkpoint .*bad\.pt"):
        Sam2Segmenter(sam2_checkpoint=bad, sam2_config="sam2.1_hiera_t", device="cpu")
    flat = tmp_path / "flat.pt"
    torch.save({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(8, 3, 7, 7)}, flat)
    with pytest.raises(CheckpointError, match=r"flat\.pt holds a dict with keys .*not sam2's format"):
        Sam2Segmenter(sam2_checkpoint=flat, sam2_config="sam2.1_hiera_t", device="cpu")


def test_mismatch_names_the_real_model(tmp_path):
    # only the trunk's width and block count (and one SAM 2.1 parameter) decide the guess: cheap fakes suffice
    def fake(width, blocks, v21):
        state = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(width, 3, 7, 7)}
        state.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(blocks)})
        if v21:
            state["no_obj_embed_spatial"] = torch.zeros(1, 64)
        return state

    assert describe_sam2_state_dict(fake(144, 48, True))[0] == "sam2.1_hiera_large"
    assert describe_sam2_state_dict(fake(112, 24, False))[0] == "sam2_hiera_base_plus"
    assert describe_sam2_state_dict(fake(96, 16, True))[0] == "sam2.1_hiera_small"
    assert describe_sam2_state_dict({})[0] is None
    path = tmp_path / "looks_like_large.pt"
    torch.save({"model": fake(144, 48, True)}, path)
    with pytest.raises(CheckpointError, match=r"looks_like_large\.pt.*looks like 'sam2.1_hiera_large'"):
        Sam2Segmenter(sam2_checkpoint=path, sam2_config="sam2.1_hiera_tiny", device="cpu")
    path = tmp_path / "sam2_hiera_small.pt"  # an official file name decides the config: a 2.0 small
    torch.save({"model": fake(96, 12, False)}, path)
    with pytest.raises(CheckpointError, match=r"not match sam2_config 'sam2_hiera_small'.*'sam2_hiera_tiny'"):
        Sam2Segmenter(sam2_checkpoint=path, device="cpu")


def test_config_names_resolve_to_packaged_configs():
    from importlib.resources import files

    assert len(SAM2_CONFIGS) == 8
    for name, path in SAM2_CONFIGS.items():
        stem = path.rsplit("/", 1)[1][: -len(".yaml")]
        for alias in (name, f"{name}.pt", stem, path):
            assert resolve_sam2_config(alias) == (path, name)
        assert files("sam2").joinpath(path).is_file()  # hydra finds configs through pkg://sam2
    assert resolve_sam2_config("configs/sam2.1/other.yaml") == ("configs/sam2.1/other.yaml",) * 2
    with pytest.raises(UnknownName, match="Did you mean 'sam2.1_hiera_large'"):
        resolve_sam2_config("sam2.1_hiera_larg")


def test_missing_sam2_package_names_the_extra(monkeypatch, checkpoint):
    import sys

    monkeypatch.setitem(sys.modules, "sam2", None)  # import sam2 now raises ImportError
    with pytest.raises(DependencyNotInstalled, match=r'pip install "hlmat\[sam2\]"'):
        Sam2Segmenter(sam2_checkpoint=checkpoint, device="cpu")


def test_auto_prefers_sam2_when_configured(checkpoint, monkeypatch, caplog):
    Default = family.StubDefault
    monkeypatch.setitem(SEGMENTERS, "default", lambda **kw: Default())
    monkeypatch.delenv("HLMAT_SAM_CHECKPOINT", raising=False)
    monkeypatch.delenv("HLMAT_SAM2_CHECKPOINT", raising=False)
    with caplog.at_level(logging.INFO, logger="hlmat_env.segmenters.sam"):
        assert isinstance(make_segmenter("auto", sam2_config="sam2.1_hiera_t"), Default)
    assert "ignoring SAM 2 options ['sam2_config']" in caplog.text and "using 'default'" in caplog.text
    caplog.clear()
    monkeypatch.setenv("HLMAT_SAM2_CHECKPOINT", str(checkpoint))
    kw = dict(sam2_config="sam2.1_hiera_t", sam2_overrides=tiny_overrides(), device="cpu")
    with caplog.at_level(logging.INFO, logger="hlmat_env.segmenters.sam"):
        seg = make_segmenter("auto", **kw)
    assert isinstance(seg, Sam2Segmenter) and "using SAM 2" in caplog.text
    # an explicit SAM v1 checkpoint wins over $HLMAT_SAM2_CHECKPOINT (only SAM's missing file is reported)
    with pytest.raises(CheckpointError, match=r"SAM checkpoint .*v1\.pth"):
        make_segmenter("auto", sam_checkpoint="v1.pth", **kw)


def test_import_hlmat_env_does_not_import_sam2():
    family.check_import_is_light(("torch", "sam2", "hydra"))


@pytest.mark.parametrize("start", ["empty", "box", "degraded"])
def test_env_runs_on_sam2(checkpoint, start):
    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers the env)

    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter="sam2", sam2_checkpoint=str(checkpoint),
                   sam2_config="sam2.1_hiera_t",
                   segmenter_kwargs={"device": "cpu", "sam2_overrides": tiny_overrides()}, max_clicks=3,
                   start=start)
    family.check_env_runs(env, Sam2Segmenter)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_same_masks_as_plain_loop_and_cache(checkpoint):
    seg = _sam2(checkpoint, device="cuda")
    assert seg.model.device.type == "cuda"
    image, target = _image(0), _target()
    clicks, ref, _ = _plain_loop(seg.model, image, target, n_clicks=5)
    calls = []
    seg.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    for _ in range(2):
        seg.set_image(image)
        prev = None
        for k in range(len(clicks)):
            prev = seg.predict(clicks[: k + 1], prev)
            np.testing.assert_array_equal(prev.mask, ref[k][0])
            np.testing.assert_allclose(prev.logits, ref[k][1], atol=1e-5)
    assert len(calls) == 1

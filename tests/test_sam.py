"""SAM segmenter: a tiny random-weight SAM built from segment-anything's own modules, loaded from a file."""
from __future__ import annotations

import logging
from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything import SamPredictor  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from hlmat_env.actions import Click  # noqa: E402
from hlmat_env.errors import CheckpointError, UnknownName  # noqa: E402
from hlmat_env.segmenters import SEGMENTERS, make_segmenter  # noqa: E402
from hlmat_env.segmenters.sam import SamSegmenter  # noqa: E402
from tests import sam_family as family  # noqa: E402
from tests.sam_family import image as _image  # noqa: E402
from tests.sam_family import target as _target  # noqa: E402

torch.set_num_threads(1)

IMG_SIZE = 128  # ResizeLongestSide and the prompt encoder follow the encoder's img_size: 1024 is not needed
DIM = 32


def build_sam_tiny(checkpoint=None) -> Sam:
    """Mirror of segment_anything.build_sam._build_sam with tiny sizes (usable as sam_model_type)."""
    emb = IMG_SIZE // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMG_SIZE, patch_size=16, embed_dim=DIM, depth=1, num_heads=1, mlp_ratio=2,
            out_chans=DIM, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=4, global_attn_indexes=(0,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=DIM, image_embedding_size=(emb, emb), input_image_size=(IMG_SIZE, IMG_SIZE),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=DIM, mlp_dim=64, num_heads=2),
            transformer_dim=DIM, iou_head_depth=2, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(build_sam_tiny().state_dict(), path)
    return path


def _sam(checkpoint, **kw) -> SamSegmenter:
    return SamSegmenter(sam_checkpoint=checkpoint, sam_model_type=build_sam_tiny, device="cpu", **kw)


def test_same_masks_as_plain_sampredictor_loop(checkpoint):
    seg = _sam(checkpoint)
    image, target = _image(0), _target()
    clicks, ref, _ = family.plain_loop(SamPredictor(seg.model), image, target, n_clicks=6)
    ref_masks = [m for m, _ in ref]
    seg.set_image(image)
    prev = None
    for k in range(len(clicks)):
        prev = seg.predict(clicks[: k + 1], prev)
        assert prev.mask.shape == target.shape and prev.mask.dtype == bool
        assert prev.logits.shape == (1, 4 * IMG_SIZE // 16, 4 * IMG_SIZE // 16)
        np.testing.assert_array_equal(prev.mask, ref_masks[k])
    assert len({m.tobytes() for m in ref_masks}) > 1, "degenerate test: every step gave the same mask"


def test_encoder_runs_once_per_image_across_episodes(checkpoint):
    seg = _sam(checkpoint)
    family.check_encoder_runs_once_per_image(seg, seg.model.image_encoder)


def test_lru_evicts_oldest(checkpoint):
    seg = _sam(checkpoint, sam_cache_size=1)
    calls = []
    seg.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    for seed in (1, 2, 1):
        seg.set_image(_image(seed))
    assert len(calls) == 3 and len(seg.cache) == 1


def test_predict_batch_equals_sequential_in_one_decoder_call(checkpoint):
    seg = _sam(checkpoint)
    def full_logits(logits):
        up = seg.model.postprocess_masks(torch.as_tensor(logits[None]), seg._input_size, seg._image_hw)
        return up[0, 0].numpy()

    family.check_predict_batch_equals_sequential(seg, seg.model.mask_decoder, full_logits)


def test_box_prompt_and_mask_prior(checkpoint):
    seg = _sam(checkpoint)
    seg.set_image(_image(4))
    box = [30, 20, 50, 40]
    p0 = seg.predict([], None, box=box)
    p1 = seg.predict([Click(50, 40, True)], p0, box=box)
    assert p0.mask.shape == p1.mask.shape == (90, 120) and p0.score is not None
    family.check_mask_prior_and_no_prompt(seg)


def test_low_res_option_is_full_size_and_close(checkpoint):
    exact, fast = _sam(checkpoint), _sam(checkpoint, sam_low_res=True)
    image = _image(5)
    exact.set_image(image)
    fast.set_image(image)
    clicks = [Click(50, 40, True), Click(10, 80, False)]
    a, b = exact.predict(clicks), fast.predict(clicks)
    assert b.mask.shape == a.mask.shape and b.mask.dtype == bool
    np.testing.assert_allclose(a.logits, b.logits)
    assert np.mean(a.mask != b.mask) < 0.02


def test_disk_cache_round_trip(checkpoint, tmp_path):
    family.check_disk_cache_round_trip(lambda folder: _sam(checkpoint, sam_cache_dir=folder), tmp_path / "emb")


def test_missing_and_mismatched_checkpoints(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth"):
        SamSegmenter(sam_checkpoint=tmp_path / "nope.pth", sam_model_type="vit_b", device="cpu")
    with pytest.raises(CheckpointError, match=r"sam_tiny\.pth.*'vit_b'.*width 32"):
        SamSegmenter(sam_checkpoint=checkpoint, sam_model_type="vit_b", device="cpu")
    with pytest.raises(CheckpointError, match="cannot tell the SAM model type"):
        SamSegmenter(sam_checkpoint=checkpoint, device="cpu")
    with pytest.raises(UnknownName, match="vit_bb"):
        SamSegmenter(sam_checkpoint=checkpoint, sam_model_type="vit_bb", device="cpu")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        SamSegmenter(sam_checkpoint=bad, sam_model_type=build_sam_tiny, device="cpu")


def test_mismatch_names_the_real_type(tmp_path):
    # only the patch embedding decides the guess: a fake vit_l-shaped entry is enough and cheap
    path = tmp_path / "looks_like_l.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16)}, path)
    with pytest.raises(CheckpointError, match=r"looks_like_l\.pth.*looks like 'vit_l'"):
        SamSegmenter(sam_checkpoint=path, sam_model_type=build_sam_tiny, device="cpu")


def test_sam_needs_a_checkpoint(monkeypatch):
    monkeypatch.delenv("HLMAT_SAM_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError, match="HLMAT_SAM_CHECKPOINT"):
        make_segmenter("sam", device="cpu")


def test_auto_chooses_default_without_checkpoint_and_sam_with_one(checkpoint, monkeypatch, caplog):
    Default = family.StubDefault
    monkeypatch.setitem(SEGMENTERS, "default", lambda **kw: Default())
    monkeypatch.delenv("HLMAT_SAM_CHECKPOINT", raising=False)
    with caplog.at_level(logging.INFO, logger="hlmat_env.segmenters.sam"):
        assert isinstance(make_segmenter("auto", sam_model_type="vit_b"), Default)
    assert "using 'default'" in caplog.text and "ignoring SAM options ['sam_model_type']" in caplog.text
    caplog.clear()
    monkeypatch.setenv("HLMAT_SAM_CHECKPOINT", str(checkpoint))
    with caplog.at_level(logging.INFO, logger="hlmat_env.segmenters.sam"):
        seg = make_segmenter("auto", sam_model_type=build_sam_tiny, device="cpu")
    assert isinstance(seg, SamSegmenter) and "using SAM" in caplog.text


def test_import_hlmat_env_does_not_import_torch():
    family.check_import_is_light(("torch", "segment_anything"))


@pytest.mark.parametrize("start", ["empty", "box", "degraded"])
def test_env_runs_on_sam(checkpoint, start):
    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers the env)

    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter="sam", sam_checkpoint=str(checkpoint),
                   sam_model_type=build_sam_tiny, segmenter_kwargs={"device": "cpu"}, max_clicks=3,
                   start=start)
    family.check_env_runs(env, SamSegmenter)

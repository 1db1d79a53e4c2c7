"""Segment Anything (SAM) as the env's click-to-mask model: SegAgent's recipe, with cached embeddings.

Recipe, per step (the same as a ``SamPredictor`` loop, which the tests check mask for mask):

- **Prompts**: every click so far as a point prompt, ``(x, y)`` pixel order, label 1 positive / 0 negative;
  a box start state adds the box prompt (``box`` is ``[x, y, w, h]``, passed to SAM as ``[x, y, x+w, y+h]``).
- **Mask input**: the previous prediction's low-res logits (``1 x 256 x 256`` for the official models) as
  ``mask_input``. A previous prediction that has a mask but no SAM logits (e.g. a degraded start mask) is
  turned into logits of +/-:data:`~hlmat_env.segmenters._prompting.MASK_PRIOR_LOGIT` at SAM's low
  resolution.
- **Multimask rule**: with exactly one click and no box the prompt is ambiguous, so SAM returns 3 masks
  (``multimask_output=True``) and the one with the highest predicted IoU is kept; in every other case
  (2+ clicks, or any box) a single mask is decoded (``multimask_output=False``), as in RITM/SegAgent-style
  SAM evaluation.
- **Threshold**: logits > ``model.mask_threshold`` (0.0). ``Prediction.logits`` holds the chosen low-res
  logits (float32 ``1 x 256 x 256``), ``Prediction.score`` SAM's predicted IoU.

Speed:

- The image embedding is computed once per (image, model) and reused for every step and episode on that
  image through :class:`~hlmat_env.segmenters.embedding_cache.EmbeddingCache` (in memory, LRU; optionally
  on disk with ``sam_cache_dir=``). The cache, the batching and the logits carry-over are shared with
  SAM 2 (:mod:`hlmat_env.segmenters._prompting`).
- :meth:`SamSegmenter.predict_batch` decodes many candidate click lists with one prompt-encoder and one
  mask-decoder call. Lists are grouped by length and each group is one call: padding shorter lists with
  ``label=-1`` points would add "not a point" tokens that change SAM's attention and so its masks, and the
  multimask rule depends on the click count. Tree search (K candidates = the same clicks + one new click)
  is therefore always a single call, and results equal sequential :meth:`~SamSegmenter.predict` calls.
  On a CPU this saves no time (the decoder is compute-bound and does the same work per candidate: 8
  candidates took as long batched as one by one in ``hlmat bench-sam``); the gain is expected on a GPU,
  where K small calls are bound by kernel launches.
- ``sam_low_res=True`` skips SAM's full ``postprocess_masks`` (two bilinear resizes through a 1024x1024
  float map) and resamples the 256x256 logits straight to ``H x W`` with one bilinear ``cv2.warpAffine``
  that uses the same pixel-centre mapping. The mask is still full resolution ``H x W``; it differs from the
  exact one only along boundaries (``hlmat bench-sam`` measures the IoU and the time saved). On a CPU the
  exact postprocess costs ~7 ms per mask against ~0.5 s for the ViT-B decoder itself, so the option
  matters little there.

``segment_anything`` and ``torch`` are imported on first use, so ``import hlmat_env`` stays light.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from hlmat_env.actions import Click
from hlmat_env.segmenters._prompting import (PromptedSegmenter, best_of, check_rgb, click_arrays, default_device,
                                             mask_input_batch, model_and_id)
from hlmat_env.segmenters.base import Prediction, make_segmenter, sam_checkpoint_from_env
from hlmat_env.segmenters.embedding_cache import EmbeddingCache
from hlmat_env.segmenters.sam_checkpoint import ModelType, load_sam

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from segment_anything.modeling import Sam

logger = logging.getLogger(__name__)

SAM_ONLY_KWARGS = (
    "sam_checkpoint", "sam_model_type", "sam_model", "sam_cache_dir", "sam_cache_size", "sam_low_res",
    "embedding_cache", "device",
)


class SamSegmenter(PromptedSegmenter):
    """SAM behind the :class:`~hlmat_env.segmenters.base.Segmenter` interface.

    Args:
        sam_checkpoint: path of a SAM checkpoint; defaults to ``$HLMAT_SAM_CHECKPOINT``.
        sam_model_type: ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, a builder ``f(checkpoint=None) -> Sam`` for a
            custom architecture, or None (default) to read the type off the checkpoint's tensor shapes.
        sam_model: an already built ``Sam`` module used as is instead of a checkpoint (benchmarks, tests).
            Its embeddings are cached in memory only, keyed by the object's identity.
        device: torch device, default ``"cuda"`` when available else ``"cpu"``.
        sam_cache_dir: optional folder for on-disk embeddings (needs a checkpoint file, whose path, size and
            modification time are part of the key).
        sam_cache_size: how many image embeddings to keep in memory (4 MiB each).
        sam_low_res: resample the low-res logits to full size with one cv2 bilinear warp instead of SAM's
            ``postprocess_masks`` (faster, boundary pixels may differ).
        embedding_cache: an :class:`EmbeddingCache` to share between segmenters (overrides the two
            ``sam_cache_*`` options).

    Raises:
        CheckpointError: no checkpoint configured, file missing, or file and model type do not match.
    """

    name = "sam"

    def __init__(
        self,
        sam_checkpoint: str | os.PathLike | None = None,
        sam_model_type: ModelType = None,
        sam_model: "Sam | None" = None,
        device: str | None = None,
        sam_cache_dir: str | os.PathLike | None = None,
        sam_cache_size: int = 32,
        sam_low_res: bool = False,
        embedding_cache: EmbeddingCache | None = None,
    ):
        from segment_anything.utils.transforms import ResizeLongestSide

        self.device = device or default_device()
        self.model, self.model_id = model_and_id(
            "sam", sam_model, sam_checkpoint, sam_cache_dir, self.device,
            load=lambda path: load_sam(path, sam_model_type, self.device), from_env=sam_checkpoint_from_env,
            env_var="HLMAT_SAM_CHECKPOINT", module_prefix="module")
        self.low_res = bool(sam_low_res)
        self.cache = embedding_cache or EmbeddingCache(sam_cache_size, sam_cache_dir)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self._features: "torch.Tensor | None" = None
        self._image_hw: tuple[int, int] | None = None  # the original image's (H, W)
        self._input_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` (uint8 HxWx3 RGB), or take its embedding from the cache."""
        import torch

        image = check_rgb(image, "SAM")
        self._features = torch.from_numpy(self._features_of(image)).to(self.device)
        h, w = image.shape[:2]
        self._image_hw = (h, w)
        self._input_size = self.transform.get_preprocess_shape(h, w, self.transform.target_length)

    def _embed(self, image: np.ndarray) -> np.ndarray:
        """Image encoder output, float32 ``1 x C x h x w`` (SAM: ``1 x 256 x 64 x 64``), as SamPredictor."""
        import torch

        if self.model.image_format != "RGB":
            image = image[..., ::-1]
        x = torch.as_tensor(self.transform.apply_image(image), device=self.device)
        x = x.permute(2, 0, 1).contiguous()[None]
        with torch.inference_mode():
            features = self.model.image_encoder(self.model.preprocess(x))
        return features.float().cpu().numpy()

    # ------------------------------------------------------------------ prompts
    def _decode(
        self, click_lists: list[Sequence[Click]], mask_input: np.ndarray | None, box: Sequence[int] | None
    ) -> list[Prediction]:
        """One prompt-encoder + mask-decoder call for ``B`` click lists of equal length ``N``."""
        import torch

        model, dev, b = self.model, self.device, len(click_lists)
        n = len(click_lists[0])
        points = None
        if n:
            coords, labels = click_arrays(click_lists)
            coords = self.transform.apply_coords(coords, self._image_hw)
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=dev),
                torch.as_tensor(labels, dtype=torch.int, device=dev),
            )
        boxes = None
        if box is not None:
            x, y, w, h = (float(v) for v in box)
            xyxy = self.transform.apply_boxes(np.array([[x, y, x + w, y + h]]), self._image_hw)
            boxes = torch.as_tensor(xyxy, dtype=torch.float, device=dev).expand(b, 4)
        masks = mask_input_batch(mask_input, b, dev)
        multimask = n == 1 and box is None
        with torch.inference_mode():
            sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
            low_res, iou = model.mask_decoder(
                image_embeddings=self._features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            low_res, scores = best_of(low_res, iou)
            if self.low_res:
                logits = low_res.float().cpu().numpy()
                full = [self._upsample_cv2(lg[0]) for lg in logits]
            else:
                up = model.postprocess_masks(low_res, self._input_size, self._image_hw)
                full = list((up > model.mask_threshold)[:, 0].cpu().numpy())
                logits = low_res.float().cpu().numpy()
        scores = scores.float().cpu().numpy()
        return [Prediction(full[i], logits[i], float(scores[i])) for i in range(b)]

    # ------------------------------------------------------------------ resolution changes
    def _low_res_scale(self) -> tuple[float, float]:
        """Low-res pixels per original pixel along (x, y): original -> resized input -> low-res logits."""
        low = self.model.prompt_encoder.mask_input_size[0]
        img = self.transform.target_length
        (h, w), (ih, iw) = self._image_hw, self._input_size
        return iw / w * low / img, ih / h * low / img

    def _upsample_cv2(self, logits: np.ndarray) -> np.ndarray:
        """bool HxW mask from low-res logits (LxL float32) with one bilinear warp (pixel centres aligned)."""
        sx, sy = self._low_res_scale()
        h, w = self._image_hw
        m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
        up = cv2.warpAffine(
            logits, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        return up > self.model.mask_threshold

    def _low_res_shape(self) -> tuple[int, int]:
        """``(L, L)``: the prompt encoder's mask input size (256 x 256 for the official models)."""
        return tuple(self.model.prompt_encoder.mask_input_size)

    def _mask_to_low_res(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``mask`` resized as SAM resizes the image (longest side to the input size, padded), then to
        ``shape``; float32 in [0, 1]."""
        (ih, iw), size = self._input_size, self.transform.target_length
        padded = np.zeros((size, size), np.float32)
        padded[:ih, :iw] = cv2.resize(mask.astype(np.float32), (iw, ih), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(padded, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _drop_options(kwargs: dict[str, Any], options: Sequence[str], what: str) -> dict[str, Any]:
    """``kwargs`` without ``options`` (``device`` and ``embedding_cache`` are shared and kept), with a warning
    naming the dropped ones that were set."""
    shared = ("device", "embedding_cache")
    dropped = sorted(k for k in kwargs if k in options and k not in shared and kwargs[k] is not None)
    if dropped:
        logger.warning("segmenter 'auto': ignoring %s options %s", what, dropped)
    return {k: v for k, v in kwargs.items() if k not in options or k in shared}


def make_auto_segmenter(**kwargs: Any):
    """``"auto"``: SAM 2 when ``sam2_checkpoint=`` or ``sam2_model`` is given, or when
    ``$HLMAT_SAM2_CHECKPOINT`` is set and no SAM checkpoint or model is given; else SAM when a checkpoint is
    configured (``sam_checkpoint=`` or ``$HLMAT_SAM_CHECKPOINT``) or a ``sam_model`` is given; else the
    default weight-free segmenter (SAM-only options are then dropped)."""
    from hlmat_env.segmenters.sam2 import SAM2_ONLY_KWARGS, sam2_checkpoint_from_env  # no torch import

    sam2_given = kwargs.get("sam2_checkpoint") is not None or kwargs.get("sam2_model") is not None
    sam_given = kwargs.get("sam_checkpoint") is not None or kwargs.get("sam_model") is not None
    if sam2_given or (not sam_given and sam2_checkpoint_from_env()):
        logger.info("segmenter 'auto': using SAM 2 (checkpoint %s)",
                    kwargs.get("sam2_checkpoint") or sam2_checkpoint_from_env() or "<given module>")
        return make_segmenter("sam2", **_drop_options(kwargs, SAM_ONLY_KWARGS, "SAM"))
    kwargs = _drop_options(kwargs, SAM2_ONLY_KWARGS, "SAM 2")
    checkpoint = kwargs.get("sam_checkpoint") or sam_checkpoint_from_env()
    if checkpoint is not None or kwargs.get("sam_model") is not None:
        logger.info("segmenter 'auto': using SAM (checkpoint %s)", checkpoint or "<given module>")
        return SamSegmenter(**{**kwargs, "sam_checkpoint": checkpoint})
    dropped = sorted(k for k in kwargs if k in SAM_ONLY_KWARGS and kwargs[k] is not None)
    if dropped:
        logger.warning("segmenter 'auto': no SAM checkpoint configured, ignoring SAM options %s", dropped)
    logger.info(
        "segmenter 'auto': no SAM checkpoint (sam_checkpoint= or $HLMAT_SAM_CHECKPOINT), using 'default'"
    )
    return make_segmenter("default", **{k: v for k, v in kwargs.items() if k not in SAM_ONLY_KWARGS})

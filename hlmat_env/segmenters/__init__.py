"""Segmenters: click-to-mask models behind one small interface, built by name."""
from hlmat_env.segmenters.base import (
    SEGMENTERS,
    Prediction,
    Segmenter,
    make_segmenter,
    predict_batch,
    register_segmenter,
    segmenter_name,
    segmenter_version,
)
from hlmat_env.segmenters.sam import SamSegmenter, make_auto_segmenter  # imports torch lazily

register_segmenter("sam", SamSegmenter)
register_segmenter("auto", make_auto_segmenter)

from hlmat_env.segmenters.sam2 import Sam2Segmenter  # noqa: E402  (imports sam2 and torch lazily)

register_segmenter("sam2", Sam2Segmenter)

from hlmat_env.segmenters.graphcut import GraphCutSegmenter  # noqa: E402
from hlmat_env.segmenters.grabcut_peer import GrabCutSegmenter  # noqa: E402

register_segmenter("default", GraphCutSegmenter)
register_segmenter("graphcut", GraphCutSegmenter)
register_segmenter("grabcut", GrabCutSegmenter)

__all__ = ["SEGMENTERS", "Prediction", "Segmenter", "make_segmenter", "predict_batch", "register_segmenter",
           "segmenter_name", "segmenter_version"]

"""Segmenters: click-to-mask models behind one small interface, built by name."""
from hlmat_env.segmenters.base import (
    SEGMENTERS,
    Prediction,
    Segmenter,
    make_segmenter,
    predict_batch,
    register_segmenter,
)
from hlmat_env.segmenters.sam import SamSegmenter, make_auto_segmenter  # imports torch lazily

register_segmenter("sam", SamSegmenter)
register_segmenter("auto", make_auto_segmenter)

__all__ = ["SEGMENTERS", "Prediction", "Segmenter", "make_segmenter", "predict_batch", "register_segmenter"]

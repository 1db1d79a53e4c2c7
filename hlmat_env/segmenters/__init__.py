"""Segmenters: click-to-mask models behind one small interface, built by name."""
from hlmat_env.segmenters.base import (
    SEGMENTERS,
    Prediction,
    Segmenter,
    make_segmenter,
    predict_batch,
    register_segmenter,
)

__all__ = ["SEGMENTERS", "Prediction", "Segmenter", "make_segmenter", "predict_batch", "register_segmenter"]

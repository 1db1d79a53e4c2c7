"""The process reward model (PRM): a learned estimate of a mask's IoU with the unseen target, and its uses.

- ``scorer``: the scorer interface :class:`PRM` (``score(image, mask, caption)``), :func:`load_prm`,
  the learned value head, an ensemble, and the MLLM's own estimate.
- ``model`` (the network, :class:`PRMNet`), ``data`` (training states), ``train`` (training and metrics),
  ``trunk`` (grounding pretraining of its trunk).
- ``stop`` (:class:`PRMStop`, the stop signal), ``search`` (:class:`TreeSearch`, PRM-guided search),
  ``mask_scoring`` (scoring a model's COCO results to filter annotations).

torch loads on first use of the model parts.
"""
from __future__ import annotations

from agents.lazy import lazy_getattr

__all__ = ["PRM", "PRMConfig", "PRMNet", "PRMStop", "TreeSearch", "load_prm", "score_coco_results", "train_prm"]

_LAZY = {"PRM": "agents.prm.scorer", "load_prm": "agents.prm.scorer", "PRMConfig": "agents.prm.model",
         "PRMNet": "agents.prm.model", "PRMStop": "agents.prm.stop", "TreeSearch": "agents.prm.search",
         "score_coco_results": "agents.prm.mask_scoring", "train_prm": "agents.prm.train"}

__getattr__ = lazy_getattr("agents.prm", _LAZY)

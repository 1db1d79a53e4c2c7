"""The MLLM text policy and its training: :class:`MLLMAgent` (any Hugging Face VLM, registered as
``mllm:PATH``), :func:`build_tiny_vlm` (tiny models from real configs, random weights, for tests and CPU runs)
and :func:`sft` (supervised fine-tuning on exported demonstrations). transformers loads on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MLLMAgent", "build_tiny_vlm", "load_vlm", "sft"]

_LAZY = {"MLLMAgent": "agents.mllm.policy", "load_vlm": "agents.mllm.policy",
         "build_tiny_vlm": "agents.mllm.tiny_vlm", "sft": "agents.mllm.sft"}


def __getattr__(name: str) -> Any:
    """Import the named part on first use (they need the ``llm`` extra)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents.mllm' has no attribute {name!r}")

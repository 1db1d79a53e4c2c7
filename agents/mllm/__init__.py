"""The MLLM text policy and its training: :class:`MLLMAgent` (any Hugging Face VLM, registered as
``mllm:PATH``), :func:`build_tiny_vlm` (tiny models from real configs, random weights, for tests and CPU runs)
and :func:`sft` (supervised fine-tuning on exported demonstrations). transformers loads on first use.
"""
from __future__ import annotations

from agents.lazy import lazy_getattr

__all__ = ["MLLMAgent", "build_tiny_vlm", "load_vlm", "sft"]

_LAZY = {"MLLMAgent": "agents.mllm.policy", "load_vlm": "agents.mllm.policy",
         "build_tiny_vlm": "agents.mllm.tiny_vlm", "sft": "agents.mllm.sft"}

__getattr__ = lazy_getattr("agents.mllm", _LAZY)

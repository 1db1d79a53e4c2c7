"""The MLLM text policy and its training: :class:`MLLMAgent` (any Hugging Face VLM, registered as
``mllm:PATH``), :func:`build_tiny_vlm` (tiny models from real configs, random weights, for tests and CPU
runs), :func:`sft` (supervised fine-tuning on exported demonstrations), :class:`HLMATGRPOEnv` (HLMATEnv as a GRPO
environment for TRL's ``GRPOTrainer``) and :func:`grpo` (``hlmat grpo``). transformers loads on first use.
"""
from __future__ import annotations

from agents.lazy import lazy_getattr

__all__ = ["HLMATGRPOEnv", "MLLMAgent", "build_tiny_vlm", "grpo", "load_vlm", "sft"]

_LAZY = {"MLLMAgent": "agents.mllm.policy", "load_vlm": "agents.mllm.policy",
         "build_tiny_vlm": "agents.mllm.tiny_vlm", "sft": "agents.mllm.sft",
         "HLMATGRPOEnv": "agents.mllm.grpo", "grpo": "agents.mllm.grpo_train"}

__getattr__ = lazy_getattr("agents.mllm", _LAZY)

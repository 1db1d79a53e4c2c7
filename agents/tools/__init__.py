"""The tools around the agents: the benchmark (``benchmark``), demonstration generation (``generate``),
paired statistics (``stats``), the results suite behind the README's tables (``results``), the segmenter
benchmark (``segmenter_benchmark``), SAM speed tests (``sam_speed``) and the settings records that make long
runs resumable (``settings_record``).
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GenerateConfig", "benchmark", "compare_runs", "generate"]

_LAZY = {"benchmark": "agents.tools.benchmark", "GenerateConfig": "agents.tools.generate",
         "generate": "agents.tools.generate", "compare_runs": "agents.tools.stats"}


def __getattr__(name: str) -> Any:
    """Import the named tool on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents.tools' has no attribute {name!r}")

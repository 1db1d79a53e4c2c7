"""The tools around the agents: the benchmark (``benchmark``), demonstration generation (``generate``; its
Minari build, ``generate_minari``), paired statistics (``stats``), the results suite behind the README's tables
(``results``), the segmenter benchmark (``segmenter_benchmark``), SAM speed tests (``sam_speed``) and the
settings records that make long runs resumable (``settings_record``).
"""
from __future__ import annotations

from agents.lazy import lazy_getattr

__all__ = ["GenerateConfig", "benchmark", "compare_runs", "generate"]

_LAZY = {"benchmark": "agents.tools.benchmark", "GenerateConfig": "agents.tools.generate",
         "generate": "agents.tools.generate", "compare_runs": "agents.tools.stats"}

__getattr__ = lazy_getattr("agents.tools", _LAZY)

"""One home for the package's shipped models: the path of a file or folder in ``agents/assets`` (the PPO policy
and its step judge, the default PRM, ``mllm:tiny``). Each loader checks the path and names what is missing."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_asset(name: str) -> Path:
    """The path of ``agents/assets/<name>`` in the installed package (it may not exist: callers check)."""
    return Path(str(resources.files("agents") / "assets" / name))

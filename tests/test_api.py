"""The public API: every ``__all__`` name imports, and importing the env package pulls no agent or heavy extra."""
from __future__ import annotations

import subprocess
import sys

import hlmat_env


def test_all_names_import():
    for name in hlmat_env.__all__:
        assert getattr(hlmat_env, name) is not None, name


def test_env_package_imports_no_agents_and_no_heavy_extras():
    code = (
        "import sys, hlmat_env, gymnasium as gym; gym.make('HLMATEnv-v0');"
        "bad = [m for m in ('agents', 'transformers', 'stable_baselines3', 'segment_anything', 'ray')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

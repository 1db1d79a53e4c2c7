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


def test_env_package_source_never_imports_agents():
    """Imports point one way (agents -> hlmat_env): no module of the env package names the agents package."""
    import ast
    from pathlib import Path

    root = Path(hlmat_env.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "agents" or n.startswith("agents.")]
    assert offenders == []


def test_agents_public_api_imports():
    import agents

    for name in agents.__all__:
        assert getattr(agents, name) is not None, name

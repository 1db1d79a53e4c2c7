"""Every shipped model runs from the package, all at once, as a newcomer would first try them (#25).

``hlmat benchmark --agent oracle,random,ppo,mllm:tiny --prm default --stop prm`` must work with nothing but the
package's own assets: the PPO policy, the default PRM and the tiny VLM. The run here is small (2 scenes, 3
clicks); what it checks is that each agent acted through the stop signal and produced real episodes.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib import resources

import pytest

pytest.importorskip("stable_baselines3", reason="ppo needs the rl extra")
pytest.importorskip("transformers", reason="mllm:tiny needs the llm extra")

AGENTS = ("oracle", "random", "ppo", "mllm:tiny")


def test_every_shipped_asset_has_a_settings_record():
    assets = resources.files("agents") / "assets"
    for weights, record in (("ppo_grounded.zip", "ppo_grounded.json"), ("prm_default.pt", "prm_default.json"),
                            ("mllm_tiny", "mllm_tiny.json")):
        assert (assets / weights).is_file() or (assets / weights).is_dir(), weights
        text = (assets / record).read_text()
        assert "hlmat " in text or "python -m agents." in text, f"{record} names no command that retrains it"


def test_benchmark_with_every_shipped_model(tmp_path):
    out = tmp_path / "bench"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "agents.cli", "benchmark", "--agent", ",".join(AGENTS), "--prm", "default",
           "--stop", "prm", "--dataset", "synthetic:val", "--limit", "2", "--max-clicks", "3", "--seed", "0",
           "--out", str(out), "--no-progress"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for agent in AGENTS:
        assert results[agent]["n"] == 2, agent
        assert 0.0 <= results[agent]["miou@3"] <= 1.0
    with open(out / "per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["agent"] for row in rows} == set(AGENTS)
    # the oracle is the robot user: with any stop rule it cannot be worse than the random agent on these scenes
    assert results["oracle"]["miou@3"] >= results["random"]["miou@3"]

"""The shipped ``mllm:tiny`` policy (agents/assets/mllm_tiny): it loads from the package, plays valid clicks, and
its settings record says how to rebuild it."""
from __future__ import annotations

import configparser
import fnmatch
import json
import re
from importlib import resources
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("transformers")

import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)
from agents.base import make_agent
from agents.mllm.policy import MLLMAgent, resolve_folder
from agents.rollout import run_episode

ASSETS = Path(str(resources.files("agents") / "assets"))
FOLDER = ASSETS / "mllm_tiny"
RECORD = ASSETS / "mllm_tiny.json"


def test_make_agent_loads_the_shipped_folder_and_plays_valid_clicks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder named "tiny" here: the name means the shipped model
    agent = make_agent("mllm:tiny", dtype="float32")
    assert isinstance(agent, MLLMAgent) and agent.path == FOLDER
    assert next(agent.model.parameters()).dtype.is_floating_point and agent.codec.name == json.loads(
        (FOLDER / "hlmat.json").read_text())["coords"]
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", max_clicks=2)
    episode = run_episode(env, agent, index=0, seed=0)
    assert episode.invalid == 0 and len(episode.clicks) == 2 and len(episode.ious) == 2
    assert all(0.0 <= iou <= 1.0 for iou in episode.ious)


def test_a_folder_named_tiny_wins_over_the_shipped_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_folder("tiny") == FOLDER
    (tmp_path / "tiny").mkdir()
    assert resolve_folder("tiny") == Path("tiny")


def test_the_settings_record_names_its_data_commands_and_segmenter():
    record = json.loads(RECORD.read_text())
    for key in ("data", "settings", "commands", "cpu_minutes", "segmenter_version", "scores"):
        assert key in record, key
    commands = "\n".join(record["commands"])
    for step in ("hlmat generate", "hlmat export", "hlmat tiny-vlm", "hlmat sft", "hlmat benchmark"):
        assert step in commands, step
    # Demonstrations depend on the segmenter's code: the record and the model card name the version they came
    # from, which the current default may have moved past (the card then says so).
    assert re.fullmatch(r"[0-9a-f]{12}", record["segmenter_version"])
    card = (Path(__file__).parents[1] / "docs" / "models" / "mllm_tiny.md").read_text()
    assert record["segmenter_version"] in card
    if record["segmenter_version"] != hlmat_env.segmenter_version("default"):
        assert "not the current default" in card


def test_package_data_ships_every_file_of_the_folder():
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parents[1] / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["agents"].split(",")]
    files = [f.relative_to(ASSETS.parent).as_posix() for f in [*FOLDER.iterdir(), RECORD] if f.is_file()]
    assert {"config.json", "model.safetensors", "hlmat.json", "tokenizer.json"} <= {Path(f).name for f in files}
    # setuptools globs: "*" never crosses a "/" (so "assets/*" does not ship a sub-folder's files)
    missing = [f for f in files if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)]
    assert not missing, f"setup.cfg package_data does not ship {missing}"

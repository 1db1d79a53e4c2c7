"""``hlmat research average``: the averaged folder holds the element-wise mean of the models' weights and loads as an
MLLM policy; incompatible folders are refused with a clear error."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from agents.cli import main  # noqa: E402
from agents.mllm.policy import SETTINGS_FILE, MLLMAgent, load_vlm  # noqa: E402
from agents.research.model_average import average_models  # noqa: E402
from agents.mllm.tiny_vlm import TinySize, build_tiny_vlm  # noqa: E402
from hlmat_env.errors import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("avg")
    folders = [build_tiny_vlm(root / f"m{seed}", "qwen2-vl", seed=seed) for seed in (0, 1)]
    for f in folders:
        (f / SETTINGS_FILE).write_text(json.dumps({"coords": "qwen2"}))
    return folders


def test_average_is_the_elementwise_mean_and_loads(two_models, tmp_path):
    assert main(["research", "average", str(two_models[0]), str(two_models[1]), "--out", str(tmp_path / "soup")]) == 0
    a, b, avg = (load_vlm(p, dtype="float32")[0].state_dict() for p in (*two_models, tmp_path / "soup"))
    differing = [k for k in a if a[k].is_floating_point() and not a[k].equal(b[k])]
    assert differing  # the two seeds really differ, so the check below can fail
    for k in differing:
        assert avg[k].allclose((a[k] + b[k]) / 2, atol=1e-6), k
    agent = MLLMAgent(tmp_path / "soup")
    assert agent.codec.name == "qwen2"


def test_incompatible_models_are_refused(two_models, tmp_path):
    other = build_tiny_vlm(tmp_path / "wide", "qwen2-vl", size=TinySize(hidden=96))  # no hlmat.json: codec unknown
    with pytest.raises(CheckpointError, match="shape|other parameters"):
        average_models([two_models[0], other], tmp_path / "bad")
    (other / SETTINGS_FILE).write_text(json.dumps({"coords": "llava"}))
    with pytest.raises(CheckpointError, match="different coordinate codecs"):
        average_models([two_models[0], other], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="config.json missing"):
        average_models([two_models[0], tmp_path / "nowhere"], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="at least two"):
        average_models([two_models[0]], tmp_path / "bad")

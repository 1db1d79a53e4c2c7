"""Deepening a VLM by identity-initialised layers: the deepened folder has more layers, loads, and computes the
same function (logits equal) until it is trained; a perturbed new layer changes them (so the check can fail)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from agents.cli import main  # noqa: E402
from agents.mllm.policy import SETTINGS_FILE, MLLMAgent, load_vlm, user_turn  # noqa: E402
from agents.research.model_deepen import _vision_parts, deepen_model  # noqa: E402
from agents.mllm.tiny_vlm import build_tiny_vlm  # noqa: E402
from hlmat_env.errors import CheckpointError  # noqa: E402


def _logits(model, processor) -> torch.Tensor:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    text = processor.apply_chat_template([user_turn("the red disc")], add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        return model(**processor(text=[text], images=[image], return_tensors="pt")).logits


@pytest.mark.parametrize("arch", ["llava", "qwen2-vl"])
def test_deepened_model_computes_the_same_function(arch, tmp_path):
    src = build_tiny_vlm(tmp_path / "m", arch, seed=3)
    (src / SETTINGS_FILE).write_text(json.dumps({"coords": "qwen2"}))
    assert main(["research", "deepen", str(src), "--out", str(tmp_path / "deep"), "--vision-layers", "1"]) == 0
    out = tmp_path / "deep"
    (a, proc), (b, _) = load_vlm(src, dtype="float32"), load_vlm(out, dtype="float32")
    assert len(b.model.language_model.layers) == len(a.model.language_model.layers) + 2
    assert len(_vision_parts(b)[0]) == len(_vision_parts(a)[0]) + 1
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())
    assert torch.allclose(_logits(a, proc), _logits(b, proc), atol=1e-5)
    torch.nn.init.normal_(b.model.language_model.layers[-1].mlp.down_proj.weight, std=0.5)
    assert not torch.allclose(_logits(a, proc), _logits(b, proc), atol=1e-3)
    assert MLLMAgent(out).codec.name == "qwen2"  # the codec travels with the folder


def test_deepen_refuses_nothing_to_add_and_unknown_models(tmp_path):
    model, _ = load_vlm(build_tiny_vlm(tmp_path / "m", "llava"), dtype="float32")
    with pytest.raises(ValueError, match="at least one layer"):
        deepen_model(model)
    model.config.model_type = "idefics3"
    with pytest.raises(CheckpointError, match="supports llava and qwen2_vl"):
        deepen_model(model, text_layers=1)

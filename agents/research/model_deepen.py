"""Deepen a fine-tuned vision-language model by identity-initialised layers, so that it keeps what it learned.

Why: a tiny VLM trained through a long curriculum may run out of capacity (the binding of words to one of
several objects plateaus), and training a deeper model from scratch repeats hours of curriculum. A new layer
that copies its neighbour's weights but has zeroed *output* projections (attention output and MLP down
projection) adds nothing to the residual stream: the deepened model computes exactly the same function, and
training then grows the new layers from there (function-preserving growth, as in Net2Net, Chen et al. 2016).

Supported: LLaVA (Llama text model, CLIP vision tower) and Qwen2-VL (Qwen2 text model, its vision blocks). New
text layers go after the last one, new vision layers after the last vision block (LLaVA reads the last hidden
state, ``vision_feature_layer=-1``; other feature layers are refused).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from agents.mllm.policy import complete_model_folder, load_vlm, saved_codec
from hlmat_env.errors import CheckpointError


def _zero(*linears: Any) -> None:
    import torch

    for lin in linears:
        torch.nn.init.zeros_(lin.weight)
        if lin.bias is not None:
            torch.nn.init.zeros_(lin.bias)


def _vision_parts(model: Any) -> tuple[Any, Any, str]:
    """``(vision layers ModuleList, vision config, config key of their count)``."""
    tower = model.model.vision_tower if hasattr(model.model, "vision_tower") else model.model.visual
    if hasattr(tower, "blocks"):  # Qwen2-VL
        return tower.blocks, model.config.vision_config, "depth"
    encoder = tower.vision_model.encoder if hasattr(tower, "vision_model") else tower.encoder
    return encoder.layers, model.config.vision_config, "num_hidden_layers"


def deepen_model(model: Any, text_layers: int = 0, vision_layers: int = 0) -> Any:
    """Append ``text_layers`` decoder layers and ``vision_layers`` vision layers to ``model`` in place, each a
    copy of the last one with zeroed output projections (the function is unchanged). Returns ``model``.

    Raises:
        CheckpointError: an architecture this function does not know, or a LLaVA that reads an earlier
            vision layer than the last.
    """
    model_type = getattr(model.config, "model_type", "")
    if model_type not in ("llava", "qwen2_vl"):
        raise CheckpointError(f"deepening supports llava and qwen2_vl models, not {model_type!r}")
    if text_layers < 0 or vision_layers < 0 or text_layers + vision_layers == 0:
        raise ValueError(f"add at least one layer (got text_layers={text_layers}, vision_layers={vision_layers})")
    layers, text_config = model.model.language_model.layers, model.config.text_config
    for _ in range(text_layers):
        new = copy.deepcopy(layers[-1])
        _zero(new.self_attn.o_proj, new.mlp.down_proj)
        new.self_attn.layer_idx = len(layers)  # its slot in the generation cache
        layers.append(new)
    text_config.num_hidden_layers = len(layers)
    if getattr(text_config, "layer_types", None):
        text_config.layer_types = list(text_config.layer_types) + [text_config.layer_types[-1]] * text_layers
    if vision_layers:
        if model_type == "llava" and model.config.vision_feature_layer != -1:
            raise CheckpointError("this LLaVA reads vision layer "
                                  f"{model.config.vision_feature_layer}; new layers after the last would be unused")
        blocks, vision_config, key = _vision_parts(model)
        for _ in range(vision_layers):
            new = copy.deepcopy(blocks[-1])
            if key == "depth":
                _zero(new.attn.proj, new.mlp.fc2)
            else:
                _zero(new.self_attn.out_proj, new.mlp.fc2)
            blocks.append(new)
        setattr(vision_config, key, len(blocks))
    return model


def deepen_folder(source: str | Path, out: str | Path, text_layers: int = 0, vision_layers: int = 0) -> Path:
    """Load the model folder ``source``, :func:`deepen_model` it and write it with its processor and codec to
    ``out`` (loadable as ``mllm:OUT`` and by ``hlmat sft --model OUT``)."""
    model, processor = load_vlm(source, dtype="float32")
    deepen_model(model, text_layers, vision_layers)
    out = Path(out)
    model.save_pretrained(out)
    settings: dict[str, Any] = {"deepened_from": str(source), "text_layers_added": text_layers,
                                "vision_layers_added": vision_layers}
    codec = saved_codec(source)
    if codec is not None:
        settings["coords"] = codec
    complete_model_folder(out, processor, settings)
    return out

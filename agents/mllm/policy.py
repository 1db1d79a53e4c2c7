"""``MLLMAgent``: any Hugging Face vision-language model clicks through text, as SegAgent does.

Each step it draws the current mask as SegAgent's green overlay on the full-resolution image
(:func:`hlmat_env.render.overlay_mask`), asks with SegAgent's instruction plus the description
(:func:`hlmat_env.codecs.build_instruction`) in the model's own chat template, generates, and parses the answer
with a coordinate codec (:mod:`hlmat_env.codecs`). Unparseable text becomes ``Decision(None, reason, text)``;
the episode loop then applies its policy (count as invalid, stop).

Spec: ``make_agent("mllm:PATH", coords=..., device=..., dtype=...)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.base import Agent, Decision, register_agent
from hlmat_env.codecs import Codec, ParsedAction, build_instruction, get_codec, smart_resize
from hlmat_env.errors import CheckpointError, require
from hlmat_env.render import overlay_mask

SETTINGS_FILE = "hlmat.json"
"""Written next to a fine-tuned model by ``hlmat sft``: the codec it was trained with (``{"coords": ...}``)."""

SHIPPED = {"tiny": "mllm_tiny"}
"""Shipped model names (``mllm:tiny``) -> their folder in ``agents/assets/`` (see docs/models/mllm_tiny.md)."""

DEFAULT_CODEC = {"qwen2_vl": "qwen2", "qwen3_vl": "qwen3", "qwen2_5_vl": "qwen25", "llava": "llava"}
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_folder(path: str | Path) -> Path:
    """The model folder of ``path``: a shipped model's folder in ``agents/assets/`` for a name of
    :data:`SHIPPED` (``"tiny"``) unless a file or folder of that name exists, else ``path`` itself."""
    if str(path) in SHIPPED and not Path(path).exists():
        from agents.shipped import shipped_asset

        return shipped_asset(SHIPPED[str(path)])
    return Path(path)


def saved_codec(folder: str | Path) -> str | None:
    """The codec recorded in ``folder/hlmat.json`` (None when the folder has no such file or no codec)."""
    settings = Path(folder) / SETTINGS_FILE
    return json.loads(settings.read_text()).get("coords") if settings.is_file() else None


def complete_model_folder(folder: str | Path, processor: Any, settings: dict[str, Any]) -> None:
    """Make a saved model folder loadable by ``mllm:FOLDER``: the processor and ``hlmat.json`` (the codec)
    next to the weights."""
    processor.save_pretrained(folder)
    (Path(folder) / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def load_vlm(path: str | Path, *, device: str = "cpu", dtype: str = "auto", trust_remote_code: bool = False):
    """Load ``(model, processor)`` from a local folder, checking that the processor handles images.

    Raises:
        CheckpointError: missing folder, or a processor that is only a tokenizer (a custom processor class
            that ``AutoProcessor`` could not resolve).
    """
    require("transformers", "llm")
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.processing_utils import ProcessorMixin

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"no model folder at {path} (config.json missing); build one with "
                              "`hlmat tiny-vlm --out DIR` or pass a local Hugging Face checkpoint")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the processor of {path}: {e}") from e
    if not isinstance(processor, ProcessorMixin):
        raise CheckpointError(f"AutoProcessor returned a {type(processor).__name__} for {path}, not a multimodal "
                              "processor: the folder lacks processor_config.json/preprocessor_config.json, or "
                              "its processor class needs trust_remote_code=True")
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), processor


def user_turn(instruction: str) -> dict[str, Any]:
    """The chat message of one step: the overlay image, then ``instruction`` (SegAgent's order)."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}


def resize_rule(processor: Any):
    """The ``(width, height) -> (width, height)`` input resize of a Qwen2-VL-family processor (qwen25 codec)."""
    ip = processor.image_processor
    factor = getattr(ip, "patch_size", 14) * getattr(ip, "merge_size", 2)
    size = getattr(ip, "size", None) or {}
    lo = size.get("shortest_edge", getattr(ip, "min_pixels", None) or 56 * 56)
    hi = size.get("longest_edge", getattr(ip, "max_pixels", None) or 28 * 28 * 16384)
    return lambda w, h: smart_resize(w, h, factor=factor, min_pixels=lo, max_pixels=hi)


class MLLMAgent(Agent):
    """A vision-language model as an HLMAT policy.

    Args:
        path: local model folder (Hugging Face layout, processor included), or ``"tiny"``: the shipped tiny
            LLaVA policy (``agents/assets/mllm_tiny``) unless a folder named ``tiny`` exists.
        coords: codec name (``segagent-qwen``, ``qwen2``, ``qwen3``, ``qwen25``, ``llava``) or a Codec; None
            reads ``hlmat.json`` in the folder (written by ``hlmat sft``), else picks by model type.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... or ``"auto"`` (CUDA when available).
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        max_new_tokens: generation budget per answer.
        temperature: sampling temperature of :meth:`sample` (``act`` is greedy).
        trust_remote_code: allow the folder's own model/processor code.
    """

    name = "mllm"

    def __init__(self, path: str | Path, coords: str | Codec | None = None, device: str = "cpu", dtype: str = "auto",
                 max_new_tokens: int = 32, temperature: float = 1.0, trust_remote_code: bool = False):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.path, self.device = resolve_folder(path), device
        self.model, self.processor = load_vlm(self.path, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        if coords is None:
            model_type = getattr(self.model.config, "model_type", "")
            coords = saved_codec(self.path) or DEFAULT_CODEC.get(model_type, "segagent-qwen")
        if coords == "qwen25":
            coords = get_codec("qwen25", resize=resize_rule(self.processor))
        self.codec = get_codec(coords)
        self.max_new_tokens, self.temperature = int(max_new_tokens), float(temperature)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        self.last_parsed: list[ParsedAction] = []

    # ------------------------------------------------------------------ prompt
    def prompt(self, view: Any) -> tuple[str, Any]:
        """``(chat text, PIL image)`` for the episode's current state: the overlay and the instruction."""
        from PIL import Image

        image = Image.fromarray(overlay_mask(view.image, view.mask))
        messages = [user_turn(build_instruction(view.caption))]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text, image

    # ------------------------------------------------------------------ generation
    def generate(self, texts: Sequence[str], images: Sequence[Any], *, num_samples: int = 1,
                 do_sample: bool = False, seed: int | None = None) -> list[list[str]]:
        """Answers for a batch of prompts: ``num_samples`` strings per prompt (stripped of special tokens)."""
        import torch

        inputs = self.processor(text=list(texts), images=list(images), return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_return_sequences": num_samples,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if do_sample:
            kwargs.update(do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0)
            if seed is not None:
                torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        answers = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [answers[i * num_samples:(i + 1) * num_samples] for i in range(len(texts))]

    def decide(self, text: str, view: Any) -> Decision:
        """Parse ``text`` for ``view``'s image into a Decision (invalid text -> ``Decision(None, reason, text)``)."""
        h, w = view.image.shape[:2]
        parsed = self.codec.parse(text, w, h)
        self.last_parsed.append(parsed)
        if not parsed.valid:
            return Decision(None, parsed.invalid, text)
        return Decision(parsed.to_action(w, h, view.coord_bins), None, text)

    # ------------------------------------------------------------------ Agent API
    def act(self, obs: dict, view: Any) -> Decision:
        """Choose the next action for ``obs`` (see :meth:`agents.base.Agent.act`)."""
        return self.act_batch([view])[0]

    def act_batch(self, views: Sequence[Any]) -> list[Decision]:
        """Greedy decisions for several episode views in one batched ``generate`` call."""
        self.last_parsed = []
        prompts = [self.prompt(v) for v in views]
        answers = self.generate([p[0] for p in prompts], [p[1] for p in prompts])
        return [self.decide(a[0], v) for a, v in zip(answers, views)]

    def sample(self, obs: dict, view: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` answers sampled with ``temperature`` (seeded from ``rng``), for tree search."""
        self.last_parsed = []
        text, image = self.prompt(view)
        answers = self.generate([text], [image], num_samples=k, do_sample=True, seed=int(rng.integers(2**31)))
        return [self.decide(a, view) for a in answers[0]]


def _make(arg: str | None = None, **kwargs: Any) -> MLLMAgent:
    if not arg:
        raise ValueError("the mllm agent needs a model folder: 'mllm:PATH' (or 'mllm:tiny', the shipped one)")
    return MLLMAgent(arg, **kwargs)


register_agent("mllm", _make)

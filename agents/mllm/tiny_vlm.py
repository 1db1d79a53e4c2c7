"""A tiny randomly initialised vision-language model + processor folder, built offline from a config.

For smoke tests, the SFT loop's proof of learning on CPU, and users without weights: the folder loads like any
local checkpoint (``AutoProcessor`` / ``AutoModelForImageTextToText``). Two architectures:

* ``qwen2-vl``: ``Qwen2VLForConditionalGeneration``, text hidden 64, 2 layers; vision depth 2, patch 14, merge
  2; Qwen2-VL's image processor with a small pixel budget (a 160x120 image becomes 24 image tokens).
* ``llava``: ``LlavaForConditionalGeneration``, a 2-layer CLIP vision tower (56x56 input, patch 14: 16 image
  tokens) and a 2-layer Llama text model; LLaVA-1.5's ``USER: <image>\\n... ASSISTANT:`` template.

The tokenizer is a byte-level BPE (every byte is a symbol, digits split one by one as in Qwen2) with a few
hundred merges learned from SegAgent's instruction and action strings, so prompts stay short.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hlmat_env.codecs import INSTRUCTION

ARCHS = ("qwen2-vl", "llava")
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% if message['role'] == 'user' %} {% else %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _corpus() -> list[str]:
    words = [INSTRUCTION] * 20
    for sign in ("Positive", "Negative"):
        words += [f"{sign} point: ({a}, {b})" for a in range(0, 1000, 37) for b in range(3, 1000, 101)]
        words += [f"{sign} point: (0.{a:03d}, 0.{b:03d})" for a in range(0, 1000, 97) for b in range(5, 1000, 89)]
    words += ["Finish", "Current IOU: 74, ", "USER: ", "ASSISTANT: ", "user\n", "assistant\n"]
    # the synthetic set's description words, so a description is a few tokens
    from hlmat_env.datasets.synthetic import COLOURS, SHAPES, SIZES, TEXTURES

    vocab = [*COLOURS, *SHAPES, *SIZES, *TEXTURES, "left of", "right of", "above", "below", "the"]
    words += [f" {w}" for w in vocab for _ in range(20)]
    return words


def build_tokenizer(arch: str, merges: int = 300):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the architecture's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = QWEN_SPECIALS if arch == "qwen2-vl" else LLAVA_SPECIALS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + len(specials) + merges, special_tokens=specials,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    if arch == "qwen2-vl":
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN_TEMPLATE,
            model_input_names=["input_ids", "attention_mask"], padding_side="left")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        chat_template=LLAVA_TEMPLATE, model_input_names=["input_ids", "attention_mask"], padding_side="left",
        extra_special_tokens={"image_token": "<image>"})


def _qwen2_vl(tokenizer, seed: int, size: "TinySize"):
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    hd = size.head_dim
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": size.hidden, "intermediate_size": 2 * size.hidden,
                     "num_hidden_layers": size.layers, "num_attention_heads": size.hidden // hd,
                     "num_key_value_heads": max(1, size.hidden // hd // 2), "max_position_embeddings": 2048,
                     "tie_word_embeddings": True,
                     # Qwen2-VL's split of the rotary pairs (temporal, height, width) = (1/4, 3/8, 3/8)
                     "rope_scaling": {"type": "mrope", "mrope_section": [hd // 8, 3 * hd // 16, 3 * hd // 16]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 2, "embed_dim": size.hidden // 2, "hidden_size": size.hidden, "num_heads": 2,
                       "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "in_chans": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    lo, hi = ((56 * 56, size.max_pixels) if size.image_tokens is None
              else (size.image_tokens * 28 * 28, size.image_tokens * 28 * 28))
    budget = {"shortest_edge": lo, "longest_edge": hi}
    image_processor = Qwen2VLImageProcessor(size=budget, min_pixels=lo, max_pixels=hi)
    video_processor = Qwen2VLVideoProcessor(size=budget)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=QWEN_TEMPLATE)
    return model, processor


def _llava(tokenizer, seed: int, size: "TinySize"):
    import math

    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    side = 14 * max(1, round(math.sqrt(size.image_tokens or 16)))  # square input, a side x side patch grid
    hd = size.head_dim
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": size.hidden // 2,
                       "intermediate_size": size.hidden, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": side, "patch_size": 14, "projection_dim": size.hidden // 2},
        text_config={"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": size.hidden,
                     "intermediate_size": 2 * size.hidden, "num_hidden_layers": size.layers,
                     "num_attention_heads": size.hidden // hd, "num_key_value_heads": max(1, size.hidden // hd // 2),
                     "max_position_embeddings": 2048, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    # the whole image, squashed to a square (no centre crop: a crop would hide the left and right edges)
    image_processor = CLIPImageProcessor(size={"height": side, "width": side}, do_center_crop=False)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    return model, processor


@dataclass(frozen=True)
class TinySize:
    """The size knobs of a tiny model.

    Attributes:
        hidden: text hidden size (the vision tower is half as wide); a multiple of ``head_dim``.
        layers: text decoder layers.
        image_tokens: image tokens per image; qwen2-vl: a fixed pixel budget of ``image_tokens`` 28x28 merged
            cells (48 turns a 160x120 image into 224x168 pixels, 8x6 tokens), None = a budget of 56*56 to
            ``max_pixels``; llava: the nearest square grid of 14-px patches (None = 16, a 56x56 input).
        max_pixels: qwen2-vl's largest input when ``image_tokens`` is None (160x120 -> 168x112, 24 tokens).
    """

    hidden: int = 64
    layers: int = 2
    image_tokens: int | None = None
    max_pixels: int = 160 * 160

    @property
    def head_dim(self) -> int:
        """Width of one attention head: 16 for hidden sizes up to 64, else 32."""
        return 16 if self.hidden <= 64 else 32

    def __post_init__(self) -> None:
        if self.hidden < 32 or self.hidden % self.head_dim or self.layers < 1:
            raise ValueError(f"hidden must be >= 32 and a multiple of {self.head_dim}, layers >= 1: got "
                             f"hidden={self.hidden}, layers={self.layers}")
        if self.image_tokens is not None and self.image_tokens < 1:
            raise ValueError(f"image_tokens must be >= 1, got {self.image_tokens}")


def build_tiny_vlm(out: str | Path, arch: str = "qwen2-vl", seed: int = 0, size: TinySize | None = None) -> Path:
    """Write a tiny random ``arch`` model (one of :data:`ARCHS`) of ``size`` and its processor to folder ``out``.

    The default size is hidden 64 with 2 layers (small enough to train on a CPU in tests); see :class:`TinySize`.

    Returns:
        The folder, loadable with ``AutoProcessor.from_pretrained`` and
        ``AutoModelForImageTextToText.from_pretrained``.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {list(ARCHS)}, got {arch!r}")
    tokenizer = build_tokenizer(arch)
    model, processor = (_qwen2_vl if arch == "qwen2-vl" else _llava)(tokenizer, seed, size or TinySize())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

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


def _qwen2_vl(tokenizer, seed: int, max_pixels: int):
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 2048, "tie_word_embeddings": True,
                     "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    budget = {"shortest_edge": 56 * 56, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(size=budget, min_pixels=56 * 56, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(size=budget)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=QWEN_TEMPLATE)
    return model, processor


def _llava(tokenizer, seed: int, max_pixels: int):
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 56, "patch_size": 14,
                       "projection_dim": 32},
        text_config={"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 64,
                     "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 2048,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    return model, processor


def build_tiny_vlm(out: str | Path, arch: str = "qwen2-vl", seed: int = 0, max_pixels: int = 160 * 160) -> Path:
    """Write a tiny random ``arch`` model (one of :data:`ARCHS`) and its processor to folder ``out``.

    ``max_pixels`` is qwen2-vl's input pixel budget (a 160x120 image becomes 168x112 pixels: 24 image tokens).

    Returns:
        The folder, loadable with ``AutoProcessor.from_pretrained`` and
        ``AutoModelForImageTextToText.from_pretrained``.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {list(ARCHS)}, got {arch!r}")
    tokenizer = build_tokenizer(arch)
    model, processor = (_qwen2_vl if arch == "qwen2-vl" else _llava)(tokenizer, seed, max_pixels)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

"""``HLMATGRPOEnv``: HLMATEnv as a multi-turn environment for TRL's ``GRPOTrainer`` (the env is the only reward).

**Why TRL's ``rollout_func`` and not its tools / ``environment_factory``.** SegAgent's prompt is one user turn
per click: the image with the *current* mask drawn as a green overlay, then the instruction and description;
the model answers one click. TRL's tool loop returns images inside a growing conversation in the model's
tool-call format (which the LLaVA template and an SFT-trained click policy do not speak), and TRL's forward
pass after a ``rollout_func`` sees only the row's own image. So each GRPO row here is *one turn*: a state of
an episode, shown exactly as ``mllm:`` shows it, whose image is the current overlay.

**One GRPO group** = ``num_generations`` answers sampled for the same state. Each answer is applied in the env
and the episode is then played to its end by the current policy (greedy, as ``mllm:`` acts in the benchmark),
up to ``max_clicks`` clicks in all. **Reward** = the episode's final IoU (``info["iou"]`` after its last click:
the sum of the env's IoU changes from the empty start), minus ``invalid_penalty`` when an answer of the
episode was unparseable text; such an answer ends the episode, as in :func:`agents.rollout.run_episode`.
The advantage of an answer is its episode's reward against the group's others: the same state, other first
clicks, the same policy afterwards.

**States** come from the train split: row ``r`` draws a scene and a depth ``t < max_clicks`` (from
``(seed, r)``), and the current policy plays ``t`` greedy clicks from the empty mask (so states are those the
policy itself reaches; it stops earlier on finish or invalid text). The rows are built when the trainer's data
loader asks for them (``datasets.Dataset.with_transform``), with the live model.

Use in a TRL script (``examples/grpo_trl.py``)::

    hl = HLMATGRPOEnv(model, processor, "synthetic:train", codec="qwen2", max_clicks=5)
    trainer = GRPOTrainer(model=model, processing_class=processor, args=GRPOConfig(num_generations=4, ...),
                          train_dataset=hl.dataset(), reward_funcs=hl.reward, rollout_func=hl.rollout_func)

Pass the model *object* to both (the rows are built with it). ``hl.last_episodes`` holds the episodes of the
last rollout (sample index, seed, actions, reward), so anyone can replay them through a fresh env.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from hlmat_env.codecs import Codec, build_instruction, get_codec
from hlmat_env.errors import InvalidOption
from hlmat_env.render import overlay_mask

STATE_KEY = "hlmat_state"
"""Key of the user message that names its state (TRL keeps unknown message keys; chat templates ignore them)."""


@dataclass
class GRPOEpisode:
    """One episode behind one GRPO answer, enough to replay it: ``env.reset(seed=seed, options={"index":
    index})`` then ``env.step`` each action gives ``final_iou``.

    Attributes:
        index: the dataset sample.
        seed: the reset seed.
        actions: ``[kind, x_bin, y_bin]`` of every click (the prefix, the sampled answer, the continuation).
        depth: clicks of the prefix (the sampled answer is click ``depth + 1``).
        answer: the sampled answer text.
        valid: whether the sampled answer parsed.
        invalid: unparseable answers in the episode (0 or 1: the first ends it).
        final_iou: the env's IoU after the last click (its start IoU when no click was placed).
        reward: ``final_iou - invalid_penalty * invalid``.
    """

    index: int
    seed: int
    actions: list[list[int]] = field(default_factory=list)
    depth: int = 0
    answer: str = ""
    valid: bool = True
    invalid: int = 0
    final_iou: float = 0.0
    reward: float = 0.0


@dataclass
class _State:
    index: int
    seed: int
    env_state: dict
    actions: list[list[int]]
    iou: float  # the env's info["iou"] in this state
    done: bool = False  # the episode ended (finish, invalid text, budget) or the prefix stopped


class HLMATGRPOEnv:
    """HLMATEnv episodes as GRPO rows, rollouts and rewards for TRL's ``GRPOTrainer`` (see the module doc).

    Args:
        model: the policy being trained (the same object given to ``GRPOTrainer``).
        processor: its multimodal processor.
        dataset: dataset spec of the training scenes (``"synthetic:train"``, ``"coco:PATH"``...) or a Dataset.
        codec: coordinate codec name or object (as ``mllm:``; ``hlmat.json`` of a model folder names it).
        max_clicks: clicks per episode (prefix + sampled answer + continuation).
        invalid_penalty: subtracted from the reward of an episode that ended on unparseable text.
        segmenter: segmenter name or object of the env.
        max_new_tokens: generation budget of the continuation's answers (the sampled answer uses the trainer's
            ``max_completion_length``).
        rows: length of the row dataset (rows are drawn at random; ``max_steps`` bounds training).
        seed: seeds the scene/depth draw of each row.
        env_kwargs: further ``HLMATEnv`` keyword arguments.
    """

    def __init__(self, model: Any, processor: Any, dataset: Any = "synthetic:train", *, codec: str | Codec = "qwen2",
                 max_clicks: int = 5, invalid_penalty: float = 1.0, segmenter: Any = "default",
                 max_new_tokens: int = 32, rows: int = 1_000_000, seed: int = 0,
                 env_kwargs: dict[str, Any] | None = None):
        from hlmat_env.env import HLMATEnv

        if not isinstance(max_clicks, int) or max_clicks < 1:
            raise InvalidOption(f"max_clicks must be an integer >= 1, got {max_clicks!r}")
        self.model, self.processor = model, processor
        self.codec = get_codec(codec)
        self.max_clicks, self.invalid_penalty = int(max_clicks), float(invalid_penalty)
        self.max_new_tokens, self.rows, self.seed = int(max_new_tokens), int(rows), int(seed)
        self.env = HLMATEnv(dataset=dataset, segmenter=segmenter, max_clicks=self.max_clicks, **(env_kwargs or {}))
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._calls = 0
        self.last_episodes: list[GRPOEpisode] = []
        self.totals = {"episodes": 0, "answers": 0, "valid": 0, "env_steps": 0, "seconds": 0.0}

    # ------------------------------------------------------------------ the rows
    def dataset(self):
        """A ``datasets.Dataset`` of ``rows`` rows whose ``prompt``/``image`` are built on access (see module doc)."""
        from datasets import Dataset

        return Dataset.from_dict({"row": list(range(self.rows))}).with_transform(self._build_rows)

    def draw(self, row: int) -> tuple[int, int, int]:
        """``(sample index, reset seed, depth)`` of ``row``: a function of ``(seed, row)`` alone."""
        rng = np.random.default_rng([self.seed, int(row)])
        return int(rng.integers(len(self.env.dataset))), int(rng.integers(2**31)), int(rng.integers(self.max_clicks))

    def _build_rows(self, batch: dict[str, list]) -> dict[str, list]:
        self._calls += 1
        unique = list(dict.fromkeys(batch["row"]))
        states = {}
        for row in unique:
            index, seed, _ = self.draw(row)
            _, info = self.env.reset(seed=seed, options={"index": index})
            states[row] = _State(index, seed, self.env.get_state(), [], float(info["iou"]))
        # greedy prefixes in lock-step: one batched generate per depth
        depth = {row: self.draw(row)[2] for row in unique}
        for t in range(self.max_clicks):
            todo = [r for r in unique if depth[r] > t and not states[r].done]
            if not todo:
                break
            answers = self._generate([states[r] for r in todo], sample=False)
            for r, text in zip(todo, answers):  # the row's state is the one before a finish or invalid text
                self._apply(states[r], text, prefix=True)
        out: dict[str, list] = {"prompt": [], "image": [], "row": []}
        for row in batch["row"]:
            key = f"{self._calls}:{row}"
            self._states[key] = states[row]
            self.env.set_state(states[row].env_state)
            msg = {"role": "user", "content": [{"type": "image"},
                                               {"type": "text", "text": build_instruction(self.env.caption)}],
                   STATE_KEY: key}
            out["prompt"].append([msg])
            out["image"].append(self._overlay())
            out["row"].append(row)
        while len(self._states) > 64 * max(1, len(batch["row"])):  # the data loader reads a batch or two ahead
            self._states.popitem(last=False)
        return out

    # ------------------------------------------------------------------ env helpers
    def _overlay(self):
        from PIL import Image

        return Image.fromarray(overlay_mask(self.env.image, self.env.mask))

    def _apply(self, state: _State, text: str, prefix: bool = False) -> bool:
        """Apply answer ``text`` to ``state`` in place; returns whether it parsed. Unparseable text ends the
        episode (``done``); with ``prefix``, so does finish, which is then not applied."""
        self.env.set_state(state.env_state)
        h, w = self.env.image.shape[:2]
        parsed = self.codec.parse(text, w, h)
        if not parsed.valid or (prefix and parsed.finish):
            state.done = True
            return parsed.valid
        action = parsed.to_action(w, h, self.env.coord_bins)
        _, _, terminated, truncated, info = self.env.step(action)
        self.totals["env_steps"] += 1
        state.actions.append([int(a) for a in action])
        state.env_state, state.iou = self.env.get_state(), float(info["iou"])
        state.done = bool(terminated or truncated)
        return True

    def _prompt_text(self, state: _State) -> tuple[str, Any]:
        self.env.set_state(state.env_state)
        msg = {"role": "user", "content": [{"type": "image"},
                                           {"type": "text", "text": build_instruction(self.env.caption)}]}
        text = self.processor.apply_chat_template([msg], add_generation_prompt=True, tokenize=False)
        return text, self._overlay()

    def _generate(self, states: Sequence[_State], *, sample: bool, temperature: float = 1.0,
                  max_new_tokens: int | None = None, model: Any = None) -> list[str]:
        prompts = [self._prompt_text(s) for s in states]
        _, completions = self.generate_ids([p[0] for p in prompts], [p[1] for p in prompts], sample=sample,
                                           temperature=temperature, max_new_tokens=max_new_tokens, model=model)
        return self.processor.batch_decode(completions, skip_special_tokens=True)

    def generate_ids(self, texts: Sequence[str], images: Sequence[Any], *, sample: bool, temperature: float = 1.0,
                     max_new_tokens: int | None = None, model: Any = None) -> tuple[list[list[int]], list[list[int]]]:
        """``(prompt ids, completion ids)`` per prompt, unpadded; a completion ends at its first end token."""
        import torch

        model = model if model is not None else self.model
        inputs = self.processor(text=list(texts), images=list(images), return_tensors="pt", padding=True)
        inputs = inputs.to(next(model.parameters()).device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens or self.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id,
                                  "suppress_tokens": vision_token_ids(model.config)}
        if sample:
            kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(**inputs, **kwargs)
        finally:
            model.train(was_training)
        n = inputs["input_ids"].shape[1]
        eos = set(_as_list(model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        prompt_ids, completion_ids = [], []
        for ids, mask, gen in zip(inputs["input_ids"], inputs["attention_mask"], out[:, n:]):
            prompt_ids.append(ids[mask.bool()].tolist())
            gen = gen.tolist()
            cut = next((i + 1 for i, tok in enumerate(gen) if tok in eos), len(gen))
            completion_ids.append(gen[:cut])
        return prompt_ids, completion_ids

    # ------------------------------------------------------------------ TRL hooks
    def rollout_func(self, prompts: list, trainer: Any) -> dict[str, list]:
        """TRL ``rollout_func``: sample one answer per prompt row, play each episode to its end, return the
        token ids and, as extra fields, ``hlmat_reward`` (read by :meth:`reward`) and ``hlmat_episode`` (JSON)."""
        t0 = time.perf_counter()
        model = trainer.accelerator.unwrap_model(trainer.model) if trainer is not None else self.model
        args = getattr(trainer, "args", None)
        temperature = float(getattr(args, "temperature", 1.0) or 1.0)
        max_new = int(getattr(args, "max_completion_length", None) or self.max_new_tokens)
        states = []
        for p in prompts:
            key = next((m.get(STATE_KEY) for m in reversed(p) if isinstance(m, dict) and STATE_KEY in m), None)
            if key not in self._states:
                raise KeyError(f"rollout_func: prompt without a known {STATE_KEY!r} (rows must come from "
                               "HLMATGRPOEnv.dataset(), and the data loader read too far ahead)")
            s = self._states[key]
            states.append(_State(s.index, s.seed, s.env_state, list(s.actions), s.iou))
        rendered = [self._prompt_text(s) for s in states]
        texts = [self.processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        if [r[0] for r in rendered] != texts:
            raise ValueError("rollout_func: TRL's chat text differs from the state's prompt")
        prompt_ids, completion_ids = self.generate_ids(texts, [r[1] for r in rendered], sample=True,
                                                       temperature=temperature, max_new_tokens=max_new, model=model)
        answers = self.processor.batch_decode(completion_ids, skip_special_tokens=True)
        episodes = [GRPOEpisode(s.index, s.seed, list(s.actions), len(s.actions), a) for s, a in zip(states, answers)]
        live = []
        for i, (s, ep) in enumerate(zip(states, episodes)):
            ep.valid = self._apply(s, ep.answer)
            ep.invalid = int(not ep.valid)
            if not s.done:
                live.append(i)
        while live:  # the continuation: the current policy, greedy, all episodes in one batch per click
            answers = self._generate([states[i] for i in live], sample=False, model=model)
            nxt = []
            for i, text in zip(live, answers):
                episodes[i].invalid += int(not self._apply(states[i], text))
                if not states[i].done:
                    nxt.append(i)
            live = nxt
        for s, ep in zip(states, episodes):
            ep.actions, ep.final_iou = s.actions, s.iou
            ep.reward = ep.final_iou - self.invalid_penalty * ep.invalid
        self.last_episodes = episodes
        self._account(episodes, time.perf_counter() - t0, trainer)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None,
                "hlmat_reward": [ep.reward for ep in episodes],
                "hlmat_episode": [json.dumps(asdict(ep)) for ep in episodes]}

    def reward(self, prompts: list, completions: list, hlmat_reward: list[float] | None = None,
               **kwargs: Any) -> list[float]:
        """TRL reward function: the episode rewards that :meth:`rollout_func` measured in the env."""
        if hlmat_reward is None:
            raise ValueError("HLMATGRPOEnv.reward needs rollout_func=HLMATGRPOEnv.rollout_func in the trainer")
        return [float(r) for r in hlmat_reward]

    reward.__name__ = "env_final_iou"  # type: ignore[attr-defined]  # TRL logs rewards/<name>/mean

    def _account(self, episodes: list[GRPOEpisode], seconds: float, trainer: Any) -> None:
        t = self.totals
        t["episodes"] += len(episodes)
        t["answers"] += len(episodes)
        t["valid"] += sum(ep.valid for ep in episodes)
        t["seconds"] += seconds
        metrics = getattr(trainer, "_metrics", None)  # TRL averages these into each log line
        if isinstance(metrics, dict) and "train" in metrics:
            m = metrics["train"]
            m["hlmat/parse_rate"].append(float(np.mean([ep.valid for ep in episodes])))
            m["hlmat/final_iou"].append(float(np.mean([ep.final_iou for ep in episodes])))
            m["hlmat/episode_clicks"].append(float(np.mean([len(ep.actions) for ep in episodes])))
            m["hlmat/episodes_per_s"].append(len(episodes) / max(seconds, 1e-9))


VISION_TOKEN_KEYS = ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id",
                     "vision_end_token_id")
"""Config attributes naming placeholder tokens that answers must never contain."""


def vision_token_ids(config: Any) -> list[int]:
    """The image/video placeholder token ids of a model config. They are never sampled: one inside an answer
    makes the training forward pass count more image tokens than image features (a crash)."""
    ids = {getattr(config, k, None) for k in VISION_TOKEN_KEYS}
    return sorted(int(i) for i in ids if isinstance(i, int) and i >= 0)


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def replay(episode: GRPOEpisode | dict | str, env: Any) -> float:
    """The final IoU of ``episode`` replayed through ``env`` (a fresh ``HLMATEnv`` on the same dataset)."""
    if isinstance(episode, str):
        episode = json.loads(episode)
    if isinstance(episode, dict):
        episode = GRPOEpisode(**episode)
    _, info = env.reset(seed=episode.seed, options={"index": episode.index})
    iou = info["iou"]
    for action in episode.actions:
        _, _, _, _, info = env.step(np.asarray(action, dtype=np.int64))
        iou = info["iou"]
    return float(iou)

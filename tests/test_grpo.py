"""GRPO through TRL's GRPOTrainer on HLMATEnv (agents/mllm/grpo.py), on tiny random Qwen2-VL and LLaVA builds.

An untrained model writes junk, which the real codecs reject: the penalty test relies on that. To give a group
different rewards (without which GRPO's advantages are zero and no weight moves), the step tests use a codec that
reads *any* text as a click at a place derived from its bytes (a stand-in for a trained model's answers), from
the target's box as the start mask.
"""
from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("trl")

from agents.mllm.grpo import GRPOEpisode, HLMATGRPOEnv, replay
from agents.mllm.policy import load_vlm
from agents.mllm.tiny_vlm import build_tiny_vlm
from hlmat_env.actions import Click
from hlmat_env.codecs import Codec, ParsedAction
from hlmat_env.env import HLMATEnv
from hlmat_env.errors import HLMATError

ARCHS = ("qwen2-vl", "llava")
DATASET = "synthetic:train"


class AnyTextCodec(Codec):
    """Reads any text as a negative click placed by the text's hash (test stand-in); from the box start, most
    of them change the IoU, by amounts that differ with the place."""

    name = "any-text"

    def encode_coords(self, click, width, height):  # pragma: no cover - writing is not used
        return str(click.x), str(click.y)

    def decode_coords(self, a, b, width, height):  # pragma: no cover
        return int(a), int(b)

    def _parse(self, text, width, height):
        h = hashlib.sha256(str(text).encode()).digest()
        return ParsedAction(click=Click(h[0] * width // 256, h[1] * height // 256, False))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_grpo")
    return {arch: build_tiny_vlm(root / arch, arch) for arch in ARCHS}


def _trainer(path, out, codec, *, lr=5e-2, beta=0.04, steps=1, group=8, start="box"):
    import torch
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model, processor = load_vlm(path, dtype="float32")
    model.train()
    hl = HLMATGRPOEnv(model, processor, DATASET, codec=codec, max_clicks=2, max_new_tokens=6,
                      env_kwargs={"start": start})
    args = GRPOConfig(output_dir=str(out), num_generations=group, per_device_train_batch_size=group, max_steps=steps,
                      learning_rate=lr, beta=beta, max_completion_length=6, use_cpu=True, bf16=False,
                      report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0)
    received: list[float] = []

    def reward(prompts, completions, **kw):
        r = hl.reward(prompts, completions, **kw)
        received.extend(r)
        return r

    reward.__name__ = "env_final_iou"
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=hl.dataset(),
                          processing_class=processor, rollout_func=hl.rollout_func)
    return trainer, hl, received


@pytest.fixture(scope="module", params=ARCHS)
def stepped(request, tiny, tmp_path_factory):
    """One GRPO step per architecture: the weights before, the trainer, the adapter, the rewards it received."""
    trainer, hl, received = _trainer(tiny[request.param], tmp_path_factory.mktemp("out"), AnyTextCodec())
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    return before, trainer, hl, received


def test_one_step_changes_weights(stepped):
    before, trainer, hl, received = stepped
    rewards = [ep.reward for ep in hl.last_episodes]
    assert len(set(rewards)) > 1, "the group's rewards must differ for GRPO to have an advantage"
    changed = [k for k, v in trainer.model.named_parameters() if not v.detach().equal(before[k])]
    assert changed, "one GRPO step left every weight as it was"


def test_reward_is_the_replayed_final_iou(stepped):
    _, trainer, hl, received = stepped
    assert received == [ep.reward for ep in hl.last_episodes] and len(received) == 8
    env = HLMATEnv(dataset=DATASET, max_clicks=2, start="box")
    for ep in hl.last_episodes:
        assert ep.invalid == 0 and ep.actions
        assert replay(ep, env) == ep.final_iou == ep.reward  # exact: the same env, the same clicks
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert logged and logged[0]["reward"] == pytest.approx(sum(received) / len(received), abs=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_unparseable_text_gets_the_penalty(tiny, arch):
    model, processor = load_vlm(tiny[arch], dtype="float32")
    hl = HLMATGRPOEnv(model, processor, DATASET, codec="qwen2", max_clicks=3, max_new_tokens=6, invalid_penalty=0.5)
    rows = hl.dataset()[[0, 0, 1, 1]]  # what the data loader asks for: each state twice (a group of 2)
    out = hl.rollout_func(rows["prompt"], None)
    assert len(out["completion_ids"]) == 4 and out["logprobs"] is None
    env = HLMATEnv(dataset=DATASET, max_clicks=3)
    for reward, text in zip(out["hlmat_reward"], out["hlmat_episode"]):
        ep = GRPOEpisode(**json.loads(text))
        assert not ep.valid and ep.invalid == 1  # a random model writes no click
        assert reward == replay(ep, env) - 0.5
    assert hl.reward(rows["prompt"], [], hlmat_reward=out["hlmat_reward"]) == out["hlmat_reward"]


def test_resume_continues_and_refuses_other_settings(tiny, tmp_path, monkeypatch):
    import torch

    from agents.mllm import grpo_train

    calls = []
    original = HLMATGRPOEnv.rollout_func
    monkeypatch.setattr(HLMATGRPOEnv, "rollout_func", lambda self, p, t: calls.append(1) or original(self, p, t))
    kw = dict(group_size=2, states=1, max_clicks=2, max_steps=2, save_steps=1, max_new_tokens=4, progress=False)
    out = tmp_path / "run"
    grpo_train.grpo(tiny["qwen2-vl"], DATASET, out, **kw)
    assert len(calls) == 2 and (out / "checkpoints" / "checkpoint-2" / "hlmat.json").is_file()
    assert list((out / "runs").glob("events.out.tfevents.*"))  # TensorBoard logs
    for f in (out / "checkpoints" / "checkpoint-2").iterdir():  # as if stopped after step 1
        f.unlink()
    (out / "checkpoints" / "checkpoint-2").rmdir()
    step1, _ = load_vlm(out / "checkpoints" / "checkpoint-1", dtype="float32")
    with torch.no_grad():  # make step 1's weights unmistakable (a random model's step may leave them as they were)
        for v in step1.parameters():
            v.add_(0.01)
    step1.save_pretrained(out / "checkpoints" / "checkpoint-1")
    calls.clear()
    seen = {}
    monkeypatch.setattr(HLMATGRPOEnv, "rollout_func", lambda self, p, t: calls.append(1) or seen.setdefault(
        "weights", {k: v.detach().clone() for k, v in t.model.state_dict().items()}) and original(self, p, t))
    grpo_train.grpo(tiny["qwen2-vl"], DATASET, out, resume=True, **kw)
    assert len(calls) == 1  # only step 2 ran
    assert all(v.equal(seen["weights"][k]) for k, v in step1.state_dict().items())  # ...from step 1's weights
    state = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    with pytest.raises(HLMATError, match="other settings"):
        grpo_train.grpo(tiny["qwen2-vl"], DATASET, out, resume=True, **{**kw, "group_size": 4})


@pytest.mark.slow
def test_the_trl_example_runs_and_its_rewards_replay():
    """examples/grpo_trl.py, as a user runs it (a subprocess): every printed reward is the replayed final IoU
    (minus the penalty for an unparseable answer)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(root / "examples" / "grpo_trl.py"), "--steps", "1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    first = lines.index("|---|---|---|---|---|---|") + 1
    rows = [line.rsplit(" | ", 5) for line in lines[first:first + 4]]
    assert len(rows) == 4
    for cells in rows:
        valid, final, reward, replayed = cells[1] == "True", float(cells[3]), float(cells[4]), float(cells[5][:-2])
        assert final == replayed and reward == pytest.approx(final - (0.0 if valid else 1.0), abs=1e-4)

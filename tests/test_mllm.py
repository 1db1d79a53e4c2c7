"""MLLMAgent on a tiny random Qwen2-VL / LLaVA built offline; the text-action wrapper.

An untrained model writes junk, so nothing here asserts on its text: only on types, shapes and the parse policy.
Scripted answers (a patched ``generate``) test the path from text to env action.
"""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("transformers")

import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)
from agents.base import Decision, make_agent
from agents.mllm.policy import MLLMAgent, resize_rule
from agents.rollout import run_episode
from agents.mllm.tiny_vlm import build_tiny_vlm
from agents.view import EpisodeView
from hlmat_env.actions import Click, decode_action
from hlmat_env.codecs import get_codec, smart_resize
from hlmat_env.errors import CheckpointError
from hlmat_env.wrappers_text import TextActions


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "qwen2-vl", "qwen2-vl")


@pytest.fixture
def env(disc_segmenter):
    e = gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=disc_segmenter, max_clicks=5)
    e.reset(seed=0, options={"index": 0})
    return e


def scripted(agent: MLLMAgent, answers: list[str]) -> None:
    """Replace generation by fixed answers (one per prompt per sample)."""
    agent.generate = lambda texts, images, num_samples=1, **kw: [answers[:num_samples] for _ in texts]


def test_agent_loads_and_acts_on_the_overlay(tiny_qwen, env):
    agent = make_agent(f"mllm:{tiny_qwen}")
    assert isinstance(agent, MLLMAgent) and agent.codec.name == "qwen2"  # picked by model type
    text, image = agent.prompt(EpisodeView(env))
    assert "<|image_pad|>" in text and env.unwrapped.caption in text and "green mask" in text
    assert image.size == (env.unwrapped.image.shape[1], env.unwrapped.image.shape[0])
    d = agent.act({}, EpisodeView(env))
    assert isinstance(d, Decision) and isinstance(d.text, str)
    assert d.valid == (d.invalid_reason is None)  # junk or not, the outcome is typed
    envs = [gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=env.unwrapped.segmenter) for _ in range(3)]
    for i, e in enumerate(envs):
        e.reset(seed=i, options={"index": i})
    batch = agent.act_batch([EpisodeView(e) for e in envs])
    assert len(batch) == 3 and all(isinstance(b, Decision) for b in batch)
    samples = agent.sample({}, EpisodeView(env), 4, np.random.default_rng(0))
    assert len(samples) == 4 and all(isinstance(s, Decision) for s in samples)


def test_batched_greedy_matches_single(tiny_qwen, env, disc_segmenter):
    agent = MLLMAgent(tiny_qwen, max_new_tokens=8)
    other = gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=disc_segmenter)
    other.reset(seed=1, options={"index": 3})
    singles = [agent.act({}, EpisodeView(e)).text for e in (env, other)]
    assert [d.text for d in agent.act_batch([EpisodeView(env), EpisodeView(other)])] == singles


def test_scripted_answers_become_env_actions(tiny_qwen, env):
    agent = MLLMAgent(tiny_qwen, coords="segagent-qwen")
    u = env.unwrapped
    h, w = u.image.shape[:2]
    scripted(agent, ["  Positive point: (500, 250)\n"])  # row first, leading space tolerated
    d = agent.act({}, EpisodeView(u))
    assert d.valid and decode_action(d.action, w, h, u.coord_bins) == Click(w // 4, h // 2, True)
    scripted(agent, ["Finish"])
    assert agent.act({}, EpisodeView(u)).action[0] == 2
    scripted(agent, ["Positive point: (500, 2500)"])
    d = agent.act({}, EpisodeView(u))
    assert d.action is None and "outside" in d.invalid_reason and d.text == "Positive point: (500, 2500)"
    ep = run_episode(env, agent, index=0, seed=0)  # the episode loop's policy: invalid stops the episode
    assert ep.invalid == 1 and ep.finished and ep.ious == []


def test_coords_from_settings_file_and_qwen25_rule(tiny_qwen, tmp_path):
    agent = MLLMAgent(tiny_qwen, coords="qwen25")
    rule = resize_rule(agent.processor)
    assert rule(160, 120) == smart_resize(160, 120, factor=28, min_pixels=56 * 56, max_pixels=160 * 160)
    assert agent.codec.format(Click(0, 0, True), 160, 120) == "Positive point: (0, 0)"
    (tiny_qwen / "hlmat.json").write_text(json.dumps({"coords": "llava"}))
    try:
        assert MLLMAgent(tiny_qwen).codec.name == "llava"
    finally:
        (tiny_qwen / "hlmat.json").unlink()


def test_bad_folders_give_clear_errors(tiny_qwen, tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        MLLMAgent(tmp_path / "nothing")
    with pytest.raises(ValueError, match="model folder"):
        make_agent("mllm")
    # a folder whose processor files are gone
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen, broken)
    for name in ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="processor"):
        MLLMAgent(broken)


def test_tokenizer_only_processor_is_refused(tiny_qwen, monkeypatch):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_qwen)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", lambda *a, **k: tokenizer)
    with pytest.raises(CheckpointError, match="not a multimodal processor"):
        MLLMAgent(tiny_qwen)


@pytest.mark.slow
def test_llava_architecture_loads_and_acts(tmp_path, env):
    path = build_tiny_vlm(tmp_path / "llava", "llava")
    agent = MLLMAgent(path, max_new_tokens=6)
    assert agent.codec.name == "llava"
    text, _ = agent.prompt(EpisodeView(env))
    assert text.startswith("USER: <image>\n") and text.endswith("ASSISTANT:")
    assert isinstance(agent.act({}, EpisodeView(env)), Decision)


def test_text_wrapper_policies(env):
    tenv = TextActions(env, "qwen2")
    obs, info = tenv.reset(seed=0, options={"index": 0})
    assert info["invalid_action"] is None and isinstance(tenv.action_space, gym.spaces.Text)
    obs, r, term, trunc, info = tenv.step("Positive point: (500, 500)")
    assert info["invalid_action"] is None and info["num_clicks"] == 1 and not term
    obs2, r, term, trunc, info = tenv.step("click somewhere")
    assert term and r == 0.0 and "no action" in info["invalid_action"] and info["num_clicks"] == 1
    np.testing.assert_array_equal(obs2["mask"], obs["mask"])

    cenv = TextActions(env, get_codec("llava"), on_invalid="continue", invalid_reward=-0.1, max_invalid=2)
    cenv.reset(seed=0, options={"index": 0})
    _, r, term, trunc, info = cenv.step("")
    assert (r, term, trunc, info["invalid_action"]) == (-0.1, False, False, "empty output")
    _, r, term, trunc, info = cenv.step("Positive point: (0.5, 0.5)")
    assert info["num_clicks"] == 1 and info["invalid_action"] is None
    _, r, term, trunc, info = cenv.step("nan")
    assert trunc and not term
    cenv.reset(seed=0, options={"index": 0})
    assert cenv.step("Finish")[2] is True
    with pytest.raises(ValueError, match="on_invalid"):
        TextActions(env, "qwen2", on_invalid="retry")

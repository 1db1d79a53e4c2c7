"""The variant ladder (hlmat_env.variants): registration, Gymnasium's checks, determinism, the kwargs' effect, the
documented order, and ``hlmat train-ppo --env-id``."""
from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hlmat_env
from hlmat_env.variants import VARIANTS, register_variants

REPO = Path(__file__).resolve().parents[1]
IDS = list(VARIANTS)


def start_ious(env_id: str, n: int = 8, **kw) -> list[float]:
    env = gym.make(env_id, dataset=VARIANTS[env_id].val_dataset, **kw)
    return [env.reset(seed=i, options={"index": i})[1]["iou"] for i in range(n)]


def test_every_variant_is_registered_with_a_string_entry_point_and_registration_is_idempotent():
    for env_id, variant in VARIANTS.items():
        spec = gym.spec(env_id)
        assert spec.entry_point == "hlmat_env.env:HLMATEnv"
        assert spec.kwargs == variant.kwargs
        assert variant.description
    assert register_variants() == []  # already registered by the import
    importlib.reload(hlmat_env)
    assert all(env_id in gym.registry for env_id in IDS)
    assert "VARIANTS" in hlmat_env.__all__ and hlmat_env.VARIANTS is VARIANTS


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_is_silent(env_id):
    env = gym.make(env_id, max_clicks=3, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode(env_id):
    runs = []
    for _ in range(2):
        env = gym.make(env_id, max_clicks=3)
        obs, info = env.reset(seed=7)
        steps = [(obs, info["iou"])]
        env.action_space.seed(3)
        for _ in range(2):
            obs, reward, *_, info = env.step(env.action_space.sample() * np.array([0, 1, 1]))  # positive clicks
            steps.append((obs, reward, info["iou"]))
        runs.append((info["sample_id"], steps))
    (id_a, a), (id_b, b) = runs
    assert id_a == id_b
    for sa, sb in zip(a, b):
        for key in ("image", "mask"):
            np.testing.assert_array_equal(sa[0][key], sb[0][key])
        assert sa[0]["caption"] == sb[0]["caption"] and sa[1:] == sb[1:]


def test_one_object_scenes_name_the_only_object():
    env = gym.make("HLMATEnv-OneObject-v0")
    assert env.unwrapped.dataset.objects == (1, 1) and env.unwrapped.dataset.split == "train"
    for i in range(6):
        _, info = env.reset(options={"index": i})
        assert re.fullmatch(r"the [a-z ]+", info["caption"]), info["caption"]  # no relation to another object
        assert " of " not in info["caption"] and info["iou"] == 0.0
    # the standard task's scenes hold several objects, and some descriptions need a relation to tell them apart
    std = gym.make("HLMATEnv-v0").unwrapped.dataset
    assert std.objects[0] >= 3 and any(" of " in std[i].caption for i in range(20))


def test_box_and_refine_starts_take_effect():
    for env_id in ("HLMATEnv-OneObjectBox-v0", "HLMATEnv-Box-v0"):
        assert all(v > 0 for v in start_ious(env_id)), env_id
        assert gym.make(env_id).unwrapped.start == "box"
    assert all(0 < v < 1 for v in start_ious("HLMATEnv-Refine-v0"))
    assert gym.make("HLMATEnv-Refine-v0").unwrapped.start == "degraded"
    assert gym.make("HLMATEnv-OneObjectBox-v0").unwrapped.dataset.objects == (1, 1)


def test_kwargs_override_the_registered_ones_for_evaluation_on_val():
    for env_id, variant in VARIANTS.items():
        env = gym.make(env_id, dataset=variant.val_dataset, max_clicks=4).unwrapped
        assert env.dataset.split == "val" and env.max_clicks == 4
        assert env.start == variant.kwargs.get("start", "empty")
    assert gym.make("HLMATEnv-OneObject-v0", dataset="synthetic:val?objects=1").unwrapped.dataset.objects == (1, 1)


def test_ladder_order_is_as_documented():
    """Rungs 1, 2, ... in table order, the standard task last; every rung but the last removes grounding (one
    object, or a start that shows the target: start IoU > 0), the last needs it (several objects, empty start);
    the one-object rungs come first, the box before the empty start; the docs list the ids in this order."""
    assert [v.rung for v in VARIANTS.values()] == list(range(1, len(VARIANTS) + 1))
    assert IDS[-1] == hlmat_env.ENV_ID
    for env_id in IDS:
        ds = gym.make(env_id, dataset=VARIANTS[env_id].val_dataset).unwrapped.dataset
        shown = min(start_ious(env_id, n=4)) > 0
        no_grounding = ds.objects == (1, 1) or shown
        assert no_grounding == (env_id != hlmat_env.ENV_ID), env_id
    objects = [gym.make(env_id).unwrapped.dataset.objects for env_id in IDS]
    assert objects[:2] == [(1, 1), (1, 1)] and all(lo >= 3 for lo, _ in objects[2:])
    assert IDS[:2] == ["HLMATEnv-OneObjectBox-v0", "HLMATEnv-OneObject-v0"]
    for doc in (REPO / "docs" / "env.md", REPO / "hlmat_env" / "variants.py"):
        text = doc.read_text()
        table = text[text.index("| rung |"):]
        order = [m for m in re.findall(r"`(HLMATEnv-[A-Za-z]*-?v0)`", table) if m in VARIANTS]
        assert list(dict.fromkeys(order))[: len(IDS)] == IDS, doc


def test_train_ppo_env_id_builds_the_variant(tmp_path):
    from agents.cli import build_parser
    from agents.ppo.train import PPOConfig, demo_settings, make_env

    args = build_parser().parse_args(["train-ppo", "--out", str(tmp_path), "--env-id", "HLMATEnv-Box-v0"])
    assert args.env_id == "HLMATEnv-Box-v0" and args.dataset is None
    cfg = PPOConfig(env_id="HLMATEnv-Box-v0", max_clicks=3)
    env = make_env(None, "default", cfg)  # the variant's own dataset and start
    assert env.unwrapped.start == "box" and env.unwrapped.dataset.split == "train" and env.unwrapped.max_clicks == 3
    env = make_env("synthetic:val?objects=1&size=5", "default", PPOConfig(env_id="HLMATEnv-OneObject-v0"))
    assert len(env.unwrapped.dataset) == 5 and env.unwrapped.dataset.objects == (1, 1)
    assert demo_settings(None, "default", cfg)["env_id"] == "HLMATEnv-Box-v0"
    assert "env_id" not in demo_settings("synthetic", "default", PPOConfig())  # older demo folders still match


def test_val_and_benchmark_kwargs():
    from agents.tools.benchmark import benchmark

    box = VARIANTS["HLMATEnv-Box-v0"]
    assert box.val_kwargs() == {"dataset": "synthetic:val", "start": "box"}
    assert box.benchmark_kwargs() == {"dataset": "synthetic:val", "env_kwargs": {"start": "box"}}
    assert VARIANTS["HLMATEnv-v0"].benchmark_kwargs() == {"dataset": "synthetic:val", "env_kwargs": {}}
    result = benchmark(["oracle"], **box.benchmark_kwargs(), limit=1, max_clicks=1, progress=False)
    assert result.protocol.start == "box"


def test_train_ppo_passes_the_env_id_and_ppo_flags(monkeypatch, tmp_path):
    import agents.ppo.train as train_module
    from agents.cli import build_parser
    from agents.cli.train_ppo import run

    seen = {}
    monkeypatch.setattr(train_module, "train", lambda dataset, *a, **kw: seen.update(kw, dataset=dataset) or "m")
    parser = build_parser()
    run(parser.parse_args(["train-ppo", "--out", str(tmp_path), "--env-id", "HLMATEnv-OneObject-v0",
                           "--n-epochs", "10", "--clip-range", "0.2", "--ent-coef", "0.01"]))
    assert seen["dataset"] is None and seen["env_id"] == "HLMATEnv-OneObject-v0"
    assert (seen["n_epochs"], seen["clip_range"], seen["ent_coef"]) == (10, 0.2, 0.01)
    run(parser.parse_args(["train-ppo", "--out", str(tmp_path)]))  # the standard task keeps its default data
    assert seen["dataset"] == "synthetic:train?size=20000" and seen["env_id"] == "HLMATEnv-v0"
    assert (seen["n_epochs"], seen["clip_range"], seen["ent_coef"]) == (4, 0.1, 0.0)  # PPOConfig's defaults
    cfg = train_module.PPOConfig()
    assert (cfg.n_epochs, cfg.clip_range, cfg.ent_coef) == (4, 0.1, 0.0)

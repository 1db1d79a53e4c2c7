"""The scripts in examples/ run end to end with tiny budgets (by subprocess, as a user runs them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True,
                          text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_minimal_rl():
    out = _run("minimal_rl.py", "--episodes", "1", "--max-clicks", "2")
    assert "oracle episode 0" in out and "random episode 0" in out


def test_run_benchmark(tmp_path):
    out = _run("run_benchmark.py", "--limit", "2", "--max-clicks", "3", "--out", str(tmp_path))
    assert "| oracle |" in out and (tmp_path / "curves.png").exists()


@pytest.mark.slow
def test_train_ppo(tmp_path):
    out = _run("train_ppo.py", "--out", str(tmp_path), "--timesteps", "8", "--n-steps", "8", "--bc-episodes", "1",
               "--bc-clicks", "1", "--bc-epochs", "1", "--eval-limit", "1", "--max-clicks", "1")
    assert (tmp_path / "model.zip").exists() and (tmp_path / "bc_model.zip").exists()
    assert list(tmp_path.glob("events.out.tfevents*"))  # PPO ran and logged
    assert f"| ppo:{tmp_path}/model.zip |" in out  # the saved model loads and is benchmarked


def test_click_diagnosis_places_the_oracles_clicks():
    """The robot user's first click lies inside the target by construction, and its later clicks are never
    repeats; the diagnosis must say so."""
    out = _run("click_diagnosis.py", "--agent", "oracle", "--limit", "3", "--max-clicks", "3")
    assert "first click in the target: 3," in out and "first click near miss: 0," in out, out
    assert "first click elsewhere: 0," in out and " repeat " not in out, out


def test_segmenter_sensitivity():
    out = _run("segmenter_sensitivity.py", "--dataset", "synthetic:val", "--limit", "2", "--configs", "2")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "NoC@85" not in line]
    assert rows[0].startswith("| none (defaults) |") and rows[1].startswith("| side=256 |"), out


def test_min_cut_backends():
    out = _run("min_cut_backends.py", "--dataset", "synthetic:val", "--images", "2", "--clicks", "3")
    assert "| scipy |" in out and "NO |" not in out


@pytest.mark.parametrize("schedule", [False, True], ids=["constant", "sft-schedule"])
def test_tiny_vlm_probe_sees_a_global_image_property(schedule, tmp_path):
    """The probe's control task: the answer follows the background colour, so after a short fit the held-out
    loss with the real image must be clearly below the loss with a blank image (with either optimiser); the
    saved model loads as a local checkpoint."""
    pytest.importorskip("transformers")
    from agents.mllm.policy import load_vlm

    extra = ["--sft-schedule", "--save", str(tmp_path / "m")] if schedule else []
    out = _run("tiny_vlm_probe.py", "--task", "colour", "--samples", "160", "--steps", "100", "--eval-every", "100",
               *extra)
    if schedule:
        model, processor = load_vlm(tmp_path / "m", dtype="float32")
        assert model.config.model_type == "llava" and processor.tokenizer is not None
        # --init continues from it: one step later the image already matters
        again = _run("tiny_vlm_probe.py", "--task", "colour", "--samples", "160", "--steps", "1", "--eval-every", "1",
                     "--init", str(tmp_path / "m"))
        real, blank = _probe_losses(again, 1)
        assert real < blank - 0.05, again
    real, blank = _probe_losses(out, 100)
    assert real < blank - 0.05, out


def _probe_losses(out: str, step: int) -> tuple[float, float]:
    """The held-out losses (real image, blank image) the probe printed at ``step``."""
    line = [s for s in out.splitlines() if s.startswith(f"step {step}:")][0]
    real, blank = (float(part.split()[-1]) for part in line.split(":", 1)[1].split(","))
    return real, blank


def test_vlm_image_ablation_sees_that_an_untrained_model_reads_the_image(tmp_path):
    """A random model's answer loss depends on its input image, so the real and blank losses printed must
    differ (a trained model that ignores the image prints equal ones)."""
    pytest.importorskip("transformers")
    from agents.mllm.tiny_vlm import build_tiny_vlm
    from hlmat_env.exports import export_trl
    from tests.test_sft import demonstrations

    export_trl(demonstrations(2), tmp_path / "data", coords="qwen2")
    model = build_tiny_vlm(tmp_path / "model", "qwen2-vl")
    out = _run("vlm_image_ablation.py", "--model", str(model), "--data", str(tmp_path / "data"), "--samples", "2",
               "--scenes", "2")
    loss_line, click_line = [s for s in out.splitlines() if s.startswith(("answer loss", "first clicks"))]
    real, blank = (float(loss_line.split(f"{k} images ")[1].split(",")[0]) for k in ("real", "blank"))
    assert real != blank, loss_line
    assert "on 2 scenes" in click_line and "inside the target" in click_line


@pytest.mark.slow
def test_train_ppo_budget_runs_its_stages_and_resumes(tmp_path):
    args = ["--out", str(tmp_path), "--dataset", "synthetic:train?size=6", "--trunk-steps", "2", "--trunk-batch", "2",
            "--val-limit", "2", "--bc-episodes", "1", "--bc-first-clicks", "1", "--bc-epochs", "1", "--ppo-steps", "16",
            "--workers", "1"]
    out = _run("train_ppo_budget.py", *args)
    assert (tmp_path / "trunk" / "prm.pt").exists() and (tmp_path / "policy" / "model.zip").exists()
    record = json.loads((tmp_path / "budget.json").read_text())
    assert set(record["stages"]) == {"trunk", "policy"} and record["total_seconds"] > 0
    assert "| total |" in out and "within the 30-minute budget" in out
    assert (tmp_path / "training.png").exists()  # the three stages' curves
    again = _run("train_ppo_budget.py", *args)
    assert "trunk: done earlier" in again and "policy: done earlier" in again

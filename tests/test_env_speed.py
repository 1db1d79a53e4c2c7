"""``agents.tools.env_speed`` and ``hlmat bench-env`` on tiny budgets (seconds)."""
from __future__ import annotations

import json

import pytest

from agents.cli import main
from agents.tools import env_speed
from agents.tools.env_speed import markdown_table, measure_env_speed


def test_single_sync_async_rows_and_ratios_against_single():
    rows = measure_env_speed(["synthetic:val"], ["random"], ["single", "sync", "async"], num_envs=2, steps=12,
                             warmup=2, progress=False)
    assert [(r["mode"], r["num_envs"]) for r in rows] == [("single", 1), ("sync", 2), ("async", 2)]
    single = rows[0]["steps_per_s"]
    for r in rows:
        assert r["status"] == "ok" and r["dataset"] == "synthetic:val" and r["policy"] == "random"
        assert 12 <= r["env_steps"] <= 12 + r["num_envs"] - 1  # vector modes stop at the call that reaches it
        assert r["steps_per_s"] > 0 and r["wall_s"] > 0 and r["resets"] >= 0
        assert r["steps_per_s"] == pytest.approx(r["env_steps"] / r["wall_s"])
        assert r["vs_single"] == pytest.approx(r["steps_per_s"] / single)
    assert rows[0]["vs_single"] == 1.0
    # NEXT_STEP autoreset: a vector step call after an episode end only resets, so calls = steps + resets
    for r in rows[1:]:
        assert r["step_calls"] * r["num_envs"] >= r["env_steps"] + r["resets"]
    table = markdown_table(rows)
    assert table.count("| synthetic:val | random |") == 3 and "x single" in table


def test_random_policy_is_seeded():
    a, b = (measure_env_speed(["synthetic:val"], ["random"], ["single"], steps=15, warmup=0, seed=3,
                              progress=False)[0] for _ in range(2))
    assert (a["resets"], a["mean_iou"]) == (b["resets"], b["mean_iou"])


def test_oracle_in_a_vector_env_takes_the_robot_users_actions():
    rows = measure_env_speed(["synthetic:val"], ["random", "oracle"], ["async"], num_envs=2, steps=16,
                             warmup=0, progress=False)
    random_row, oracle_row = rows
    assert oracle_row["policy"] == "oracle" and oracle_row["mode"] == "async"
    # the robot user's clicks reach a high IoU within a few clicks; random [kind, x, y] actions do not
    assert oracle_row["mean_iou"] > 0.6 and oracle_row["mean_iou"] > random_row["mean_iou"] + 0.4
    assert oracle_row["resets"] < random_row["resets"]  # random actions finish a third of the time


def test_rllib_rows_say_why_they_did_not_run(monkeypatch):
    monkeypatch.setattr(env_speed, "rllib_problem", lambda: "ray.rllib does not import (test)")
    rows = measure_env_speed(["synthetic:val"], ["oracle"], ["rllib"], num_envs=2, steps=5, progress=False)
    assert [r["num_envs"] for r in rows] == [1, 2]
    for r in rows:
        assert r["status"] == "not run: ray.rllib does not import (test)" and r["steps_per_s"] is None
    assert "rllib rows: not run: ray.rllib does not import (test)" in markdown_table(rows)


def test_rllib_problem_is_a_reason_or_none():
    problem = env_speed.rllib_problem()
    assert problem is None or (isinstance(problem, str) and problem)


def test_absent_folder_gives_not_run_rows(tmp_path):
    rows = measure_env_speed([f"folder:{tmp_path / 'absent'}"], ["random"], ["single", "async"], steps=5,
                             progress=False)
    assert len(rows) == 2 and all(r["status"].startswith("not run: no folder") for r in rows)


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="policies"):
        measure_env_speed(["synthetic:val"], ["greedy"], ["single"], steps=1, progress=False)
    with pytest.raises(SystemExit, match="--modes"):
        main(["bench-env", "--modes", "single,threads", "--steps", "1"])


def test_grabcut_rows(grabcut_dir):
    rows = measure_env_speed([f"folder:{grabcut_dir}"], ["oracle"], ["single", "sync"], num_envs=2, steps=6,
                             warmup=0, progress=False)
    assert all(r["status"] == "ok" and r["steps_per_s"] > 0 for r in rows)
    assert rows[1]["vs_single"] == pytest.approx(rows[1]["steps_per_s"] / rows[0]["steps_per_s"])


def test_cli_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(["bench-env", "--dataset", "synthetic:val", "--policy", "oracle", "--modes", "single,sync",
               "--steps", "6", "--warmup", "0", "--no-progress", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| synthetic:val | oracle | single | 1 |" in printed
    assert "| synthetic:val | oracle | sync | 2 |" in printed
    assert (out / "bench_env.md").read_text().count("| synthetic:val | oracle |") == 2
    data = json.loads((out / "bench_env.json").read_text())
    assert data["meta"]["settings"]["steps"] == 6 and data["meta"]["cpus"] >= 1
    assert [r["mode"] for r in data["rows"]] == ["single", "sync"] and data["rows"][0]["vs_single"] == 1.0
    assert (out / "bench_env.png").stat().st_size > 1000

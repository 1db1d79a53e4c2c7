"""``hlmat play``'s API (FastAPI TestClient and a real server process): tokens, validated bodies, crash safety,
recorded IoUs equal to a replay through the env, the replay viewer and the humans-vs-robot report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import gymnasium as gym  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import hlmat_env  # noqa: E402,F401
from agents.play.app import MAX_BODY_BYTES, create_app  # noqa: E402
from agents.play.recording import EpisodeWriter, read_human, repair_torn_tails  # noqa: E402
from agents.play.replay import ReplaySource, replay_in_env  # noqa: E402
from agents.play.report import compare_clicks, largest_error_region, play_report  # noqa: E402
from agents.play.session import PlayConfig, PlaySession  # noqa: E402
from hlmat_env.trajectories import iter_trajectories  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-123"
H = {"X-HLMAT-Token": TOKEN}


def make_client(out: Path, **kw) -> tuple[TestClient, PlaySession]:
    session = PlaySession(PlayConfig(dataset="synthetic:val", out=out, limit=4, **kw))
    return TestClient(create_app(session, token=TOKEN)), session


def robot_click(session: PlaySession) -> dict:
    """The robot user's click for the server's current state, as a request body (the test's stand-in person)."""
    c = session.u.expert_click()
    return {"x": c.x, "y": c.y, "positive": c.positive}


def annotate(client: TestClient, session: PlaySession, n_clicks: int) -> dict:
    for _ in range(n_clicks):
        r = client.post("/api/click", json=robot_click(session), headers=H)
        assert r.status_code == 200, r.text
    r = client.post("/api/finish", headers=H)
    assert r.status_code == 200, r.text
    return r.json()


def test_tokens_are_required(tmp_path):
    client, _ = make_client(tmp_path)
    for method, path in (("get", "/api/state"), ("post", "/api/finish"), ("post", "/api/next"), ("get", "/")):
        assert getattr(client, method)(path).status_code == 403
        r = getattr(client, method)(path, headers={"X-HLMAT-Token": "wrong"})
        assert r.status_code == 403 and "token" in r.json()["detail"]
    assert client.post("/api/click", json={"x": 1, "y": 1, "positive": True}).status_code == 403
    page = client.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert client.get("/static/app.py").status_code == 404 and client.get("/static/..%2Fapp.py").status_code == 404
    assert client.get("/api/state", headers=H).status_code == 200
    assert not list(tmp_path.glob("human-*.jsonl"))  # nothing recorded by refused calls


def test_clicks_outside_the_image_and_bad_bodies_are_rejected(tmp_path):
    client, session = make_client(tmp_path)
    w, h = session.u.image.shape[1], session.u.image.shape[0]
    for x, y in ((w, 0), (0, h), (-1, 5), (5, -1), (10**5, 3)):
        r = client.post("/api/click", json={"x": x, "y": y, "positive": True}, headers=H)
        assert r.status_code == 422, (x, y, r.text)
        assert f"({x}, {y}) lies outside the {w}x{h} image" in r.json()["detail"]
    for body in ({"x": "5", "y": 5, "positive": True}, {"x": 5.5, "y": 5, "positive": True},
                 {"x": 5, "y": 5, "positive": "yes"}, {"x": 5, "y": 5},
                 {"x": 5, "y": 5, "positive": True, "path": "/etc"},
                 {"x": 10**6, "y": 5, "positive": True}, {"x": 5, "y": 5, "positive": True, "client_t": -1}):
        r = client.post("/api/click", json=body, headers=H)
        assert r.status_code == 422, (body, r.text)
    assert client.get("/api/state", headers=H).json()["num_clicks"] == 0  # nothing reached the env


def test_unknown_sample_ids_are_refused(tmp_path):
    client, session = make_client(tmp_path)
    r = client.post("/api/next", json={"sample_id": "../../etc/passwd"}, headers=H)
    assert r.status_code == 404 and "unknown sample id" in r.json()["detail"]
    r = client.post("/api/next", json={"sample_id": session.ids[-1]}, headers=H)  # a known one is shown
    assert r.status_code == 200 and r.json()["sample_id"] == session.ids[-1]
    hidden = session.u.dataset.sample_id(10)  # in the dataset but beyond --limit: not served
    assert client.post("/api/next", json={"sample_id": hidden}, headers=H).status_code == 404
    assert client.post("/api/next", json={"sample_id": "x" * 301}, headers=H).status_code == 422


def test_oversize_bodies_are_refused(tmp_path):
    client, _ = make_client(tmp_path)
    big = json.dumps({"x": 1, "y": 1, "positive": True, "pad": "x" * MAX_BODY_BYTES})
    r = client.post("/api/click", content=big, headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    def chunks():  # no Content-Length: refused while it arrives
        for _ in range(8):
            yield b" " * 1024

    r = client.post("/api/click", content=chunks(), headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/state", headers=H).json()["num_clicks"] == 0


def test_the_target_never_reaches_the_page_and_the_iou_only_after_finish(tmp_path):
    client, session = make_client(tmp_path)
    s = client.post("/api/click", json=robot_click(session), headers=H).json()
    assert s["iou"] is None and s["ious"] is None and "target" not in s
    s = client.post("/api/finish", headers=H).json()
    assert s["ended"] and s["finished"] and s["iou"] == pytest.approx(s["ious"][-1]) and s["iou"] > 0.5
    r = client.post("/api/click", json={"x": 1, "y": 1, "positive": True}, headers=H)
    assert r.status_code == 409 and "next sample" in r.json()["detail"]
    live, live_session = make_client(tmp_path / "live", show_iou=True)
    assert live.post("/api/click", json=robot_click(live_session), headers=H).json()["iou"] > 0


def test_recorded_episodes_use_generate_schema_and_equal_a_replay_through_the_env(tmp_path):
    client, session = make_client(tmp_path)
    annotate(client, session, 3)
    client.post("/api/next", json={}, headers=H)
    client.post("/api/click", json={"x": 3, "y": 4, "positive": False}, headers=H)  # a human mistake, kept
    annotate(client, session, 2)
    trajs = list(iter_trajectories(tmp_path))  # the reader every demonstration tool uses
    assert [len(t.clicks) for t in trajs] == [3, 3]
    assert (trajs[1].clicks[0].x, trajs[1].clicks[0].y, trajs[1].clicks[0].positive) == (3, 4, False)
    human = read_human(tmp_path)
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", max_clicks=20)
    for traj, raw in human:
        assert raw["annotator"] == "human" and raw["session_id"] == session.session_id and raw["finished"]
        assert traj.dataset == "synthetic:val" and traj.start == "empty" and traj.segmenter == "default"
        ts = [c["t"] for c in raw["clicks"]]
        assert ts == sorted(ts) and all(t >= 0 for t in ts)
        assert replay_in_env(env, traj) == [s.iou for s in traj.clicks]


def test_a_new_server_over_the_same_folder_keeps_every_finished_episode(tmp_path):
    client, session = make_client(tmp_path)
    annotate(client, session, 2)
    client.post("/api/next", json={}, headers=H)
    annotate(client, session, 1)
    client.post("/api/next", json={}, headers=H)
    client.post("/api/click", json=robot_click(session), headers=H)  # in progress: not finished, not recorded
    with open(session.writer.path, "ab") as f:
        f.write(b'{"torn": ')  # a kill in the middle of a write
    client2, session2 = make_client(tmp_path)  # "restart": a new app on the same folder
    assert session2.session_id != session.session_id
    assert len(read_human(tmp_path)) == 2
    assert session2.ids[session2._index] not in {t.sample_id for t, _ in read_human(tmp_path)}  # continues
    annotate(client2, session2, 1)
    assert len(read_human(tmp_path)) == 3


def test_repair_torn_tails_keeps_complete_lines(tmp_path):
    w = EpisodeWriter(tmp_path, "s1")
    w.append({"a": 1})
    w.path.write_bytes(w.path.read_bytes() + b'{"b": 2')
    assert repair_torn_tails(tmp_path) == 1
    assert w.path.read_text() == '{"a":1}\n'
    with pytest.raises(ValueError):
        EpisodeWriter(tmp_path, "../x")


def _start_server(out: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "play", "--dataset", "synthetic:val", "--out",
                             str(out), "--port", "0", "--limit", "4", "--token", TOKEN], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    for line in proc.stdout:
        if "open http://" in line:
            return proc, line.split("open ", 1)[1].split("/?token=")[0]
        if time.time() > deadline:
            break
    proc.kill()
    raise AssertionError("hlmat play printed no address")


def _wait_up(base: str) -> None:
    import httpx

    for _ in range(200):
        try:
            httpx.get(base + "/api/state", headers=H, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"no server at {base}")


def test_a_server_killed_with_sigkill_loses_no_finished_episode(tmp_path):
    import httpx

    proc, base = _start_server(tmp_path)
    try:
        assert base.startswith("http://127.0.0.1:")  # local by default
        _wait_up(base)
        with httpx.Client(base_url=base, headers=H, timeout=30) as c:
            for k in range(2):
                s = c.get("/api/state").json()
                for x, y in ((s["width"] // 2, s["height"] // 2), (2, 2))[: k + 1]:
                    assert c.post("/api/click", json={"x": x, "y": y, "positive": True}).status_code == 200
                assert c.post("/api/finish").json()["recorded"] == k + 1
                c.post("/api/next", json={})
            c.post("/api/click", json={"x": 1, "y": 1, "positive": True})  # in progress when killed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    recorded = read_human(tmp_path)
    assert [len(t.clicks) for t, _ in recorded] == [1, 2]
    client, session = make_client(tmp_path)  # the restart
    assert session.ids[session._index] == session.ids[2]
    annotate(client, session, 1)
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    for traj, _ in read_human(tmp_path):
        assert replay_in_env(env, traj) == [s.iou for s in traj.clicks]


def test_replay_viewer_steps_through_any_trajectory_file(tmp_path):
    from agents.tools.generate import GenerateConfig, generate

    generate(GenerateConfig(dataset="synthetic:val", out=tmp_path / "robot", limit=2, progress=False))
    source = ReplaySource(tmp_path / "robot")
    client = TestClient(create_app(replay=source, token=TOKEN))
    eps = client.get("/api/replay/episodes", headers=H).json()["episodes"]
    assert len(eps) == 2 and eps[0]["annotator"] == "robot/agent"
    n = eps[0]["clicks"]
    f = client.get(f"/api/replay/frame?episode=0&step={n}", headers=H).json()
    assert f["image"].startswith("data:image/png;base64,") and len(f["ious"]) == n + 1
    assert f["ious"][-1] == pytest.approx(eps[0]["final_iou"])
    assert client.get(f"/api/replay/frame?episode=0&step={n + 1}", headers=H).status_code == 404
    assert client.get("/api/replay/frame?episode=5&step=0", headers=H).status_code == 404
    assert client.get("/api/replay/frame?episode=0&step=0").status_code == 403
    assert client.get(f"/?token={TOKEN}").text.count("replay.js") == 1


def test_report_puts_humans_beside_the_robot_user(tmp_path):
    client, session = make_client(tmp_path)
    annotate(client, session, 2)  # a "human" who clicks where the robot user would
    client.post("/api/next", json={}, headers=H)
    s = client.get("/api/state", headers=H).json()
    client.post("/api/click", json={"x": 0, "y": 0, "positive": True}, headers=H)  # far from the robot's click
    client.post("/api/finish", headers=H)
    [rep] = play_report(tmp_path, ["oracle", "random"], max_clicks=5, out=tmp_path / "report")
    assert rep.samples == 2 and set(rep.metrics) == {"human (1 session(s))", "oracle (robot user)", "random"}
    assert rep.metrics["human (1 session(s))"]["n"] == 2
    assert rep.metrics["oracle (robot user)"]["miou@5"] > rep.metrics["random"]["miou@5"]
    c = rep.clicks
    assert c["n"] == 3 and c["same_sign"] == 1.0
    assert c["dist_median"] == 0.0 and c["dist_mean"] > 10  # two clicks on the robot's pixel, one at (0, 0)
    assert c["on_error"] == pytest.approx(2 / 3)  # (0, 0) is background: a positive click there is no correction
    assert (tmp_path / "report" / "report.md").read_text().count("oracle (robot user)") == 2  # metrics, paired
    oracle = rep.paired["oracle (robot user)"]
    assert oracle["n"] == 2 and oracle["lo"] <= oracle["diff"] <= oracle["hi"]
    assert s["width"] > 0


def test_largest_error_region_picks_the_biggest_component():
    import numpy as np

    target = np.zeros((10, 10), np.int8)
    target[0:2, 0:2] = 1  # a small missed region
    target[5:10, 5:10] = 1  # a larger one
    region = largest_error_region(target, np.zeros((10, 10), bool))
    assert region.sum() == 25 and region[7, 7] and not region[0, 0]
    assert not largest_error_region(target, target > 0).any()
    assert compare_clicks([])["n"] == 0


def test_an_episode_finished_without_clicks_is_recorded_and_reported(tmp_path):
    client, session = make_client(tmp_path, start="box")
    s = client.post("/api/finish", headers=H).json()
    assert s["ended"] and s["num_clicks"] == 0 and 0 < s["iou"] < 1  # the box start's IoU
    [(traj, raw)] = read_human(tmp_path)
    assert traj.clicks == [] and traj.start == "box" and traj.start_mask is not None
    [rep] = play_report(tmp_path, [], max_clicks=5)
    assert rep.start == "box" and rep.clicks["n"] == 0
    assert rep.metrics["human (1 session(s))"]["miou@5"] == pytest.approx(s["iou"])


def test_a_server_error_answers_json_with_a_message(tmp_path, monkeypatch):
    session = PlaySession(PlayConfig(dataset="synthetic:val", out=tmp_path, limit=2))
    client = TestClient(create_app(session, token=TOKEN), raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("segmenter exploded")

    monkeypatch.setattr(session, "click", broken)
    r = client.post("/api/click", json={"x": 1, "y": 1, "positive": True}, headers=H)
    assert r.status_code == 500 and r.json()["detail"] == "server error: RuntimeError: segmenter exploded"

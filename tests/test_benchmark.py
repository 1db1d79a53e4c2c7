"""The benchmark: metric bookkeeping with scripted agents whose NoC is known by construction, result files,
determinism, the command."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from agents.base import Agent, Decision
from agents.rollout import run_episode
from agents.tools.benchmark import METRICS, Protocol, benchmark, evaluate, mean_curve, summarize_episodes
from agents.baselines.oracle import OracleAgent
from hlmat_env.datasets import Sample
from tests.conftest import DiscSegmenter

R = 6  # disc radius of the targets and of DiscSegmenter: one click at a disc's centre paints it exactly


def _discs_sample(centres: list[tuple[int, int]], name: str) -> Sample:
    yy, xx = np.mgrid[0:48, 0:64]
    target = np.zeros((48, 64), np.int8)
    for cx, cy in centres:
        target[(yy - cy) ** 2 + (xx - cx) ** 2 <= R**2] = 1
    image = np.full((48, 64, 3), 120, np.uint8)
    return Sample(image, target, caption=f"{len(centres)} discs", sample_id=name)


# The oracle covers one disc per click, so IoU after j clicks is j / (number of discs): NoC by construction.
DISCS = [_discs_sample([(20, 20)], "one"), _discs_sample([(12, 12), (40, 14), (26, 34)], "three"),
         _discs_sample([(14, 30), (48, 20)], "two")]


class FinishAfter(Agent):
    """Clicks where the oracle would, then finishes after ``k`` clicks."""

    name = "finish_after"
    privileged = True  # uses the robot user's clicks

    def __init__(self, k: int):
        self.k = k

    def act(self, obs, env):
        return Decision(np.array([2, 0, 0]) if len(env.clicks) >= self.k else env.expert_action())


class InvalidAfter(Agent):
    """Clicks where the oracle would, then emits an invalid output after ``k`` clicks."""

    name = "invalid_after"
    privileged = True  # uses the robot user's clicks

    def __init__(self, k: int):
        self.k = k

    def act(self, obs, env):
        if len(env.clicks) >= self.k:
            return Decision(None, invalid_reason="unparsable")
        return Decision(env.expert_action())


def _run(agents, **kw):
    return benchmark(agents, DISCS, DiscSegmenter(R), progress=False, **kw)


def test_oracle_noc_known_by_construction():
    res = _run([OracleAgent()])
    eps = res.episodes["oracle"]
    assert [len(ep.clicks) for ep in eps] == [1, 3, 2] and all(ep.finished for ep in eps)
    np.testing.assert_allclose(eps[1].ious, [1 / 3, 2 / 3, 1.0])
    m = res.metrics["oracle"]
    assert m["noc85"] == pytest.approx(2.0) and m["noc90"] == pytest.approx(2.0)
    assert m["nof85"] == 0 and m["nof90"] == 0
    assert m["miou@1"] == pytest.approx(np.mean([1, 1 / 3, 1 / 2]))
    for k in (3, 5, 7, 10, 20):  # finished episodes keep their last (perfect) mask
        assert m[f"miou@{k}"] == pytest.approx(1.0)
    assert m["ciou"] == pytest.approx(1.0) and m["giou"] == pytest.approx(1.0)
    assert m["invalid_rate"] == 0 and m["sec_per_step"] > 0


def test_early_finish_keeps_last_mask():
    m = _run([FinishAfter(2)], max_clicks=20).metrics["finish_after"]
    assert m["noc85"] == pytest.approx(np.mean([1, 20, 2]))  # never reached counts as the budget
    assert m["nof85"] == 1 and m["nof90"] == 1
    assert m["miou@1"] == pytest.approx(np.mean([1, 1 / 3, 1 / 2]))
    for k in (3, 5, 20):
        assert m[f"miou@{k}"] == pytest.approx(np.mean([1, 2 / 3, 1]))
    assert m["giou"] == pytest.approx(np.mean([1, 2 / 3, 1]))
    # cIoU pools pixels: the three-disc sample holds 2 of its 3 discs, all else is exact
    assert m["ciou"] == pytest.approx(5 / 6, rel=1e-6)
    assert m["invalid_rate"] == 0


def test_invalid_outputs_counted_and_stop_the_episode():
    m = _run([InvalidAfter(1)], max_clicks=10).metrics["invalid_after"]
    # every episode: one valid click, then one invalid output (2 decisions)
    assert m["invalid_rate"] == pytest.approx(0.5)
    assert m["noc85"] == pytest.approx(np.mean([1, 10, 10]))
    assert m["miou@10"] == pytest.approx(np.mean([1, 1 / 3, 1 / 2]))


def test_result_files(tmp_path):
    res = _run(["oracle", "random", FinishAfter(1)], max_clicks=5, out=tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data) == ["protocol", "oracle", "random", "finish_after"]
    assert data.pop("protocol") == {"start": "empty", "first_click": "agent", "max_clicks": 5}
    for m in data.values():
        assert set(METRICS) <= set(m)
    rows = list(csv.DictReader(open(tmp_path / "per_sample.csv")))
    assert len(rows) == 3 * len(DISCS)
    assert {"agent", "sample_id", "final_iou", "iou@5"} <= set(rows[0])
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n") == 2 + 3 and "mIoU@5" in table
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.metrics["random"]["miou@5"] < res.metrics["oracle"]["miou@5"]


def test_deterministic_per_sample():
    a = _run(["random"], max_clicks=4, seed=3).episodes["random"]
    b = _run(["random"], max_clicks=4, seed=3, limit=2).episodes["random"]
    assert len(b) == 2
    assert [ep.clicks for ep in a[:2]] == [ep.clicks for ep in b]
    c = _run(["random"], max_clicks=4, seed=4).episodes["random"]
    assert [ep.clicks for ep in a] != [ep.clicks for ep in c]


def test_evaluate_and_wrap_hook():
    import gymnasium as gym

    env = gym.make("HLMATEnv-v0", dataset=DISCS, segmenter=DiscSegmenter(R), max_clicks=5)
    eps = evaluate(OracleAgent(), env, [2, 0], progress=False)
    assert [ep.index for ep in eps] == [2, 0]
    assert summarize_episodes(eps, 5)["n"] == 2
    wrapped = []
    res = _run(["oracle"], wrap=lambda a: wrapped.append(a) or FinishAfter(1))
    assert isinstance(wrapped[0], OracleAgent)
    assert res.metrics["oracle"]["miou@3"] == pytest.approx(np.mean([1, 1 / 3, 1 / 2]))


def test_bad_input():
    with pytest.raises(ValueError, match="listed twice"):
        _run(["oracle", "oracle"])
    with pytest.raises(ValueError, match="limit"):
        _run(["oracle"], limit=0)
    with pytest.raises(KeyError, match="Did you mean 'oracle'"):
        _run(["oracel"])


def test_command(tmp_path, monkeypatch, capsys):
    from agents.cli import benchmark as cmd
    from hlmat_env.segmenters import SEGMENTERS

    monkeypatch.setitem(SEGMENTERS, "disc-test", DiscSegmenter)
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["benchmark", "--agent", "oracle,random", "--dataset", "synthetic:val",
                              "--segmenter", "disc-test", "--out", str(tmp_path), "--limit", "2",
                              "--max-clicks", "3", "--no-progress", "--coords", "qwen"])
    assert cmd.agent_kwargs_from_args(args) == {"mllm": {"coords": "qwen"}}
    assert cmd.run(args) == 0
    assert set(json.loads((tmp_path / "results.json").read_text())) == {"protocol", "oracle", "random"}
    assert "| oracle |" in capsys.readouterr().out
    args.agent_kwargs = "{not json"
    with pytest.raises(SystemExit, match="not valid JSON"):
        cmd.agent_kwargs_from_args(args)


@pytest.mark.slow
def test_grabcut_oracle_beats_random(grabcut_dir, tmp_path):
    res = benchmark(["oracle", "random"], f"folder:{grabcut_dir}", "default", limit=2, max_clicks=3,
                    progress=False, out=tmp_path)
    assert res.metrics["oracle"]["miou@3"] > res.metrics["random"]["miou@3"]
    assert (tmp_path / "curves.png").exists()


# ---------------------------------------------------------------------------------------------- protocols
class Spy(Agent):
    """Records what it sees at its first act (view type, clicks so far), then finishes."""

    name = "spy"

    def __init__(self):
        self.seen = []

    def act(self, obs, view):
        self.seen.append((type(view).__name__, view.num_clicks, hasattr(view, "expert_click")))
        return Decision(np.array([2, 0, 0]))


def test_first_click_robot_then_the_agent():
    robot = Protocol(first_click="robot")
    oracle = _run(["oracle"], max_clicks=5).episodes["oracle"]
    rnd = _run(["random"], max_clicks=5, seed=1, protocol=robot).episodes["random"]
    alone = _run(["random"], max_clicks=5, seed=1).episodes["random"]
    for o, r, a in zip(oracle, rnd, alone):
        assert r.robot_clicks == 1 and len(r.clicks) == 5  # click 1 is the robot's, in the budget
        assert r.clicks[0] == o.clicks[0] and r.ious[0] == pytest.approx(o.ious[0])
        # clicks 2..5 are the random agent's: the positions its own generator draws (the sign follows the mask)
        assert [(c.x, c.y) for c in r.clicks[1:]] == [(c.x, c.y) for c in a.clicks[:4]]
        assert len(r.step_seconds) == 4  # only the agent's decisions are timed
    m = summarize_episodes(rnd, 5)
    assert m["miou@1"] == pytest.approx(np.mean([1, 1 / 3, 1 / 2]))  # the oracle's click 1 on every sample
    # the oracle continuing from its own first click is the oracle
    again = _run(["oracle"], max_clicks=5, protocol={"first_click": "robot"})
    assert [ep.clicks for ep in again.episodes["oracle"]] == [ep.clicks for ep in oracle]


def test_first_click_robot_agent_stays_unprivileged():
    spy = Spy()
    eps = _run([spy], protocol=Protocol(first_click="robot")).episodes["spy"]
    assert spy.seen == [("EpisodeView", 1, False)] * len(DISCS)
    assert [ep.robot_clicks for ep in eps] == [1] * len(DISCS) and all(ep.finished for ep in eps)


def test_box_start_protocol():
    res = _run(["random"], max_clicks=3, protocol={"start": "box"})
    assert res.protocol == Protocol(start="box")
    assert all(0 < ep.start_iou < 1 for ep in res.episodes["random"])
    assert mean_curve(res.episodes["random"], 3)[0] > 0
    # the older spelling, env_kwargs={"start": ...}, is the protocol's start
    assert _run(["oracle"], env_kwargs={"start": "box"}).protocol.start == "box"


def test_protocol_recorded(tmp_path):
    _run(["oracle", "random"], max_clicks=4, out=tmp_path, protocol=Protocol("box", "robot"))
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["protocol"] == {"start": "box", "first_click": "robot", "max_clicks": 4}
    header = (tmp_path / "results.md").read_text().splitlines()[0]
    assert header.startswith("| agent (start box, first click robot) | n |")


def test_invalid_protocol():
    with pytest.raises(ValueError, match=r"start must be one of \['empty', 'box', 'degraded'\], got 'boxes'"):
        _run(["oracle"], protocol={"start": "boxes"})
    with pytest.raises(ValueError, match=r"first_click must be one of \['agent', 'robot'\], got 'human'"):
        _run(["oracle"], protocol=Protocol(first_click="human"))
    with pytest.raises(ValueError, match="unknown protocol keys"):
        _run(["oracle"], protocol={"first": "robot"})
    with pytest.raises(TypeError, match="protocol must be"):
        _run(["oracle"], protocol="robot")
    with pytest.raises(ValueError, match="contradicts"):
        _run(["oracle"], protocol={"start": "box"}, env_kwargs={"start": "degraded"})
    with pytest.raises(ValueError, match="first_click"):
        evaluate(OracleAgent(), None, [0], first_click="robots")
    with pytest.raises(ValueError, match="robot_clicks"):
        run_episode(None, OracleAgent(), robot_clicks=-1)


def test_command_protocol_flags(tmp_path, monkeypatch, capsys):
    from agents.cli import benchmark as cmd
    from hlmat_env.segmenters import SEGMENTERS

    monkeypatch.setitem(SEGMENTERS, "disc-test", DiscSegmenter)
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    base = ["benchmark", "--agent", "oracle,random", "--dataset", "synthetic:val", "--segmenter", "disc-test",
            "--out", str(tmp_path), "--limit", "2", "--max-clicks", "3", "--no-progress"]
    assert cmd.run(parser.parse_args(base + ["--start", "box", "--first-click", "robot"])) == 0
    assert json.loads((tmp_path / "results.json").read_text())["protocol"] == {
        "start": "box", "first_click": "robot", "max_clicks": 3}
    assert "| agent (start box, first click robot) |" in capsys.readouterr().out
    for bad in (["--start", "boxes"], ["--first-click", "human"]):
        with pytest.raises(SystemExit):
            parser.parse_args(base + bad)
    assert "invalid choice" in capsys.readouterr().err

"""Fine-tuning exports: LLaMA-Factory ShareGPT + dataset_info.json, TRL prompt/completion, SegAgent JSON, CLI."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import hlmat_env  # noqa: F401
from hlmat_env.codecs import build_instruction, get_codec
from hlmat_env.datasets import make_dataset
from hlmat_env.exports import LLAMAFACTORY_NAME, export, load_trl_dataset
from hlmat_env.render import overlay_mask
from hlmat_env.trajectories import read_segagent, record_trajectory, write_jsonl


@pytest.fixture(scope="module")
def trajs():
    from tests.conftest import DiscSegmenter

    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=DiscSegmenter(5), max_clicks=30)
    return [record_trajectory(env, i, start=s, seed=i, dataset_spec="synthetic:val", max_clicks=4)
            for i, s in [(0, "empty"), (1, "degraded"), (4, "empty")]]


def test_llamafactory_export(trajs, tmp_path):
    n = export(trajs, "llamafactory", tmp_path)
    assert n == sum(len(t.clicks) for t in trajs) > 0
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    entry = info[LLAMAFACTORY_NAME]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    data = json.loads((tmp_path / entry["file_name"]).read_text())
    assert len(data) == n
    ds = make_dataset("synthetic:val")
    codec = get_codec("segagent-qwen")
    k = 0
    for t in trajs:
        image = ds[t.index].image
        for j, step in enumerate(t.clicks):
            rec = data[k]
            user, assistant = rec["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant"
            assert user["content"].count("<image>") == len(rec["images"]) == 1
            assert user["content"] == "<image>" + build_instruction(t.caption) and t.caption in user["content"]
            assert assistant["content"] == codec.format(step.click, t.width, t.height)
            png = np.array(Image.open(tmp_path / rec["images"][0]))
            np.testing.assert_array_equal(png, overlay_mask(image, t.mask_before(j)))
            k += 1
    first = np.array(Image.open(tmp_path / data[0]["images"][0]))
    np.testing.assert_array_equal(first, ds[trajs[0].index].image)  # empty start: nothing overlaid yet
    assert len({r["images"][0] for r in data}) == n


def test_codec_option_and_prm_prefix(trajs, tmp_path):
    export(trajs, "llamafactory", tmp_path, coords="qwen2", with_iou=True)
    data = json.loads((tmp_path / f"{LLAMAFACTORY_NAME}.json").read_text())
    answers = iter(r["messages"][1]["content"] for r in data)
    prefixes = set()
    for t in trajs:
        for j, step in enumerate(t.clicks):
            answer = next(answers)
            expected = round(100 * t.iou_before(j))  # IoU of the mask *before* the click, 0-100
            assert answer.startswith(f"Current IOU: {expected}, ")
            parsed = get_codec("qwen2").parse(answer, t.width, t.height)
            assert parsed.click == step.click and parsed.iou == expected / 100
            prefixes.add(expected)
    assert len(prefixes) > 2


def test_trl_export(trajs, tmp_path):
    n = export(trajs, "trl", tmp_path, coords="llava")
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(lines) == n
    rec = lines[0]
    assert rec["prompt"][0]["role"] == "user"
    assert [c["type"] for c in rec["prompt"][0]["content"]] == ["image", "text"]
    assert rec["completion"] == [{"role": "assistant", "content": [
        {"type": "text", "text": get_codec("llava").format(trajs[0].clicks[0].click, trajs[0].width, trajs[0].height)}]}]
    assert (tmp_path / rec["images"][0]).is_file()
    ds = load_trl_dataset(tmp_path)
    assert len(ds) == n and ds[0]["images"][0].size == (trajs[0].width, trajs[0].height)


def main(argv: list[str]) -> int:
    """``hlmat ARGV`` for the export subcommand alone (other subcommands may be missing in a checkout)."""
    import argparse

    from agents.cli import export as command

    parser = argparse.ArgumentParser(prog="hlmat")
    command.add_parser(parser.add_subparsers(dest="command"))
    return command.run(parser.parse_args(argv))


def test_segagent_export_and_cli(trajs, tmp_path, capsys):
    write_jsonl(trajs, tmp_path / "run" / "part-00000.jsonl")
    assert main(["export", "--in", str(tmp_path / "run"), "--format", "segagent", "--out", str(tmp_path / "s")]) == 0
    assert read_segagent(tmp_path / "s" / "trajectories.json") == trajs
    assert main(["export", "--in", str(tmp_path / "run"), "--format", "llamafactory", "--out", str(tmp_path / "l"),
                 "--coords", "qwen2"]) == 0
    assert "click-step samples" in capsys.readouterr().out
    assert (tmp_path / "l" / "dataset_info.json").is_file()


def test_missing_image_is_a_clear_error(trajs, tmp_path):
    t = trajs[0]
    orphan = type(t)(**{**t.__dict__, "image": "/nowhere/x.png", "dataset": ""})
    with pytest.raises(Exception, match="x.png"):
        export([orphan], "trl", tmp_path)

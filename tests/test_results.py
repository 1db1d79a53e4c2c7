"""``hlmat results``: the suite behind every README / docs number runs end to end (fast mode), and the README's
results blocks are exactly what the suite last wrote to docs/results/."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agents.tools.results import README_SECTIONS, SECTIONS, readme_blocks, update_readme

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.slow
def test_fast_suite_writes_every_section_and_its_readme_blocks(tmp_path):
    from agents.cli import main

    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- results:{s} -->\nold\n<!-- /results:{s} -->\n" for s in README_SECTIONS))
    out = tmp_path / "results"
    assert main(["results", "--fast", "--out", str(out), "--work", str(tmp_path / "work"), "--workers", "1",
                 "--data", str(DATA), "--readme", str(readme), "--no-progress"]) == 0
    text = readme.read_text()
    assert "old" not in text
    for s in SECTIONS:
        page = (out / f"{s}.md").read_text()
        assert "fast mode" in page and "hlmat results --fast" in page
        if s in README_SECTIONS:
            assert (out / f"{s}.readme.txt").read_text().strip() in text
        else:
            assert not (out / f"{s}.readme.txt").exists()
        json.loads((out / f"{s}.json").read_text())
    agents = json.loads((out / "agents.json").read_text())
    assert agents["oracle / synthetic:val"]["miou@3"] > agents["random / synthetic:val"]["miou@3"]
    if (DATA / "grabcut").is_dir():
        assert (out / "segmenters.png").is_file() and "GrabCut" in (out / "segmenters.md").read_text()


def test_update_readme_replaces_only_the_named_block():
    text = "a\n<!-- results:agents -->\nold\n<!-- /results:agents -->\nb\n"
    assert update_readme(text, {"agents": "| new |\n"}) == "a\n<!-- results:agents -->\n| new |\n<!-- /results:agents -->\nb\n"
    with pytest.raises(ValueError, match="results:prm"):
        update_readme(text, {"prm": "x"})


def test_readme_results_blocks_are_what_the_suite_wrote():
    """Every number in the README's results blocks comes from docs/results/ (written by ``hlmat results``)."""
    blocks = readme_blocks(ROOT / "docs" / "results")
    text = (ROOT / "README.md").read_text()
    markers = re.findall(r"<!-- results:(\w+) -->", text)
    assert set(markers) <= set(SECTIONS)
    assert set(markers) == set(blocks), "README blocks and docs/results/ sections differ: rerun `make bench`"
    assert update_readme(text, blocks) == text, "README results blocks differ from docs/results: rerun `make bench`"

"""``hlmat play`` end to end in a real headless browser (Debian's chromium and chromium-driver, Selenium).

The real server runs in a subprocess (uvicorn on a free port, ``synthetic:val``, the default segmenter). The test
opens the printed address, clicks positive and negative points on the canvas (left click, right click,
shift+click), finishes, goes to the next sample, and checks that the recorded JSONL holds those clicks at the
pixels clicked and that its IoUs equal a replay through the env; then it opens the recording in
``hlmat play --replay`` and steps through it. It saves a screenshot of the page: to ``docs/img/play.png``
when ``HLMAT_WRITE_DOCS_IMG=1`` (the docs' picture), else to a temporary folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

import gymnasium as gym  # noqa: E402

import hlmat_env  # noqa: E402,F401
from agents.play.recording import read_human  # noqa: E402
from agents.play.replay import replay_in_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (`make test` installs them: apt-get install -y chromium "
           "chromium-driver)")


def start_server(*args: str) -> subprocess.Popen:
    """``hlmat play ARGS --port 0`` in a subprocess (its address: :func:`address_of`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "agents.cli", "play", *args, "--port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def address_of(proc: subprocess.Popen) -> str:
    """The address (with the token) the server printed; it accepts connections from then on."""
    for line in proc.stdout:
        if "open http://" in line:
            return line.split("open ", 1)[1].strip()
    proc.kill()
    raise AssertionError("hlmat play printed no address")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def open_browser():
    """Headless chromium through chromium-driver (no download: both are Debian's)."""
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,720", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


def wait_for(driver, condition, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(condition))


def click_pixel(driver, canvas, x: int, y: int, kind: str) -> None:
    """Click image pixel ``(x, y)`` on the canvas: ``left``, ``right`` (context click) or ``shift`` (shift+left)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
                                 canvas)
    zx, zy = rect[0] / int(canvas.get_attribute("width")), rect[1] / int(canvas.get_attribute("height"))
    dx, dy = round((x + 0.5) * zx - rect[0] / 2), round((y + 0.5) * zy - rect[1] / 2)  # from the centre
    chain = ActionChains(driver).move_to_element_with_offset(canvas, dx, dy)
    if kind == "left":
        chain.click()
    elif kind == "right":
        chain.context_click()
    else:
        chain.key_down(Keys.SHIFT).click().key_up(Keys.SHIFT)
    chain.perform()


def test_annotate_in_the_browser_and_replay(tmp_path, request):
    from selenium.webdriver.common.by import By

    out = tmp_path / "rec"
    proc = start_server("--dataset", "synthetic:val", "--out", str(out), "--limit", "3")
    try:
        browser = open_browser()  # while the server starts
        request.addfinalizer(browser.quit)
    except BaseException:
        proc.kill()
        raise
    try:
        address = address_of(proc)
        assert address.startswith("http://127.0.0.1:") and "?token=" in address
        browser.get(address)
        wait_for(browser, "return document.getElementById('canvas').dataset.clicks === '0';")
        canvas = browser.find_element(By.ID, "canvas")
        ds = hlmat_env.make_dataset("synthetic:val")
        # sample 0: a positive click on the object, a right click and a shift+click on background pixels
        t0 = ds[0].target
        ys, xs = np.nonzero(t0 > 0)
        pos = (int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
        bys, bxs = np.nonzero(t0 == 0)
        h, w = t0.shape

        def background_near(fx: float, fy: float) -> tuple[int, int]:
            i = int(np.argmin((bxs - fx * w) ** 2 + (bys - fy * h) ** 2))
            return int(bxs[i]), int(bys[i])

        neg1, neg2 = background_near(0.3, 0.5), background_near(0.5, 0.85)
        expected0 = [(*pos, True), (*neg1, False), (*neg2, False)]
        for k, ((x, y, _), kind) in enumerate(zip(expected0, ("left", "right", "shift")), 1):
            click_pixel(browser, canvas, x, y, kind)
            wait_for(browser, f"return document.getElementById('canvas').dataset.clicks === '{k}';")
        assert browser.find_element(By.ID, "iou").text == "shown after finish"
        browser.find_element(By.TAG_NAME, "body").send_keys("f")  # finish by key
        wait_for(browser, "return document.body.dataset.ended === 'true';")
        assert "IoU" in browser.find_element(By.ID, "result").text
        docs = os.environ.get("HLMAT_WRITE_DOCS_IMG") == "1"
        shot = REPO / "docs" / "img" / "play.png" if docs else tmp_path / "play.png"
        time.sleep(0.2)  # the last frame's image decodes asynchronously
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # next sample by the button, one positive click, finish by the button
        browser.find_element(By.ID, "next").click()
        wait_for(browser, f"return document.body.dataset.sample === '{ds.sample_id(1)}' "
                          "&& document.body.dataset.ended === 'false';")
        ys, xs = np.nonzero(ds[1].target > 0)
        pos1 = (int(xs[0]), int(ys[0]))
        click_pixel(browser, canvas, *pos1, "left")
        wait_for(browser, "return document.getElementById('canvas').dataset.clicks === '1';")
        browser.find_element(By.ID, "finish").click()
        wait_for(browser, "return document.body.dataset.ended === 'true';")
        assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None  # no error shown
    finally:
        stop(proc)

    recorded = read_human(out)
    assert [t.sample_id for t, _ in recorded] == [ds.sample_id(0), ds.sample_id(1)]
    assert [(s.x, s.y, s.positive) for s in recorded[0][0].clicks] == expected0
    assert [(s.x, s.y, s.positive) for s in recorded[1][0].clicks] == [(*pos1, True)]
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    for traj, raw in recorded:
        assert raw["finished"] and all(c["client_t"] is not None for c in raw["clicks"])
        assert replay_in_env(env, traj) == [s.iou for s in traj.clicks]

    proc = start_server("--replay", str(out))
    try:
        browser.get(address_of(proc))
        wait_for(browser, "return document.getElementById('steps').textContent === '3';")
        browser.find_element(By.TAG_NAME, "body").send_keys("\ue014")  # arrow right: after the first click
        wait_for(browser, "return document.getElementById('step').textContent === '1';")
        assert browser.find_element(By.ID, "clickinfo").text.startswith(f"positive click at ({pos[0]}, {pos[1]})")
    finally:
        stop(proc)

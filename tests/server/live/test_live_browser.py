"""The race view in a real browser (headless Debian Chromium through selenium + chromium-driver): the
page is open while five laps of a real race are replayed into the gateway; every car's row is seen
changing lap while the replay runs, the page follows the stream until the whole field shows lap 5,
and every row and number it shows equals the API's field state.

STRATEGIST_LIVE_SCREENSHOT=path keeps a screenshot (docs/img/live.png is made this way)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers.gateway import API_KEY
from helpers.live import RACE, GatewayProcess, tiny_onnx

from strategist.data.fastf1_reader import read_race
from strategist.paths import PROJECT_ROOT
from strategist.serving.race_requests import session_body

pytestmark = pytest.mark.slow
LAPS = 5
SPEED = 50  # laps 1-5 of Sakhir then take about 8 s: long enough to watch every row change
SHOWN_LAPS = """return [...document.querySelectorAll('#field tbody tr')].map(
  (tr) => [tr.dataset.car, tr.querySelector('[data-k=last_lap]').textContent])"""
CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1600,1000",
)


def _time(t):
    return "–" if t is None else f"{t:.3f}"


def _expected_cells(row: dict) -> dict[str, str]:
    """What the page must show for an API row (the formats of server/live/static/live.js)."""
    nxt, prev = row["next_lap"], row["previous"]
    corridor = nxt["expected_lap_time"]
    cells = {
        "position": str(row["position"]),
        "car": row["car"],
        "last_lap": str(row["last_lap"]),
        "last_lap_time": _time(row["last_lap_time_s"]),
        "p10": _time(corridor["p10_s"]),
        "p50": _time(corridor["p50_s"]),
        "p90": _time(corridor["p90_s"]),
        "bad_lap_risk": f"{100 * nxt['bad_lap_risk']:.1f}%",
        "tire_health": f"{100 * nxt['tire_health']:.0f}%",
        "traffic_cost": ("+" if nxt["traffic_cost_s"] >= 0 else "") + f"{nxt['traffic_cost_s']:.3f}",
    }
    if prev is not None and prev["inside"] is not None:
        cells["actual"] = f"{_time(prev['actual_s'])} {'✓' if prev['inside'] else '✗'}"
    return cells


@pytest.fixture()
def browser(tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which("chromedriver") is None:
        pytest.skip("Debian chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_race_view_follows_a_replay_and_shows_the_apis_numbers(real_races_dir, tmp_path, browser):
    from selenium.webdriver.common.by import By

    race_dir = real_races_dir / RACE
    if not (race_dir / "telemetry").is_dir():
        pytest.skip(f"{race_dir} has no telemetry/")
    gateway = GatewayProcess(tiny_onnx(tmp_path), tmp_path / "sessions.sqlite", tmp_path / "gateway.log")
    gateway.start()
    try:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        race = read_race(race_dir)
        field = set(race.laps.loc[race.laps["LapNumber"] == LAPS, "Driver"])  # the cars that ran lap 5
        body = session_body(race)  # what the replay opens, so it joins this session
        assert httpx.post(f"{gateway.url}/live/sessions", json=body, headers=auth).status_code == 201
        browser.get(f"{gateway.url}/live/{RACE}")
        deadline = time.monotonic() + 30
        while browser.find_element(By.ID, "link").text != "live":
            assert time.monotonic() < deadline, "the page never connected to the stream"
            time.sleep(0.1)
        assert browser.find_elements(By.CSS_SELECTOR, "#field tbody tr") == []  # nothing raced yet

        command = [sys.executable, "-m", "strategist.cli", "replay", "--race", str(race_dir), "--url"]
        command += [gateway.url, "--laps", str(LAPS), "--speed", str(SPEED), "--no-progress"]
        replay = subprocess.Popen(
            [*command, "--api-key", API_KEY],
            cwd=PROJECT_ROOT,
            env=gateway.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen: dict[str, set[str]] = {}  # car -> the laps its row showed while the replay ran
        try:
            while replay.poll() is None:
                for car, lap in browser.execute_script(SHOWN_LAPS):
                    seen.setdefault(car, set()).add(lap)
                time.sleep(0.25)
            out = replay.communicate(timeout=60)[0]
        finally:
            if replay.poll() is None:
                replay.kill()
        assert replay.returncode == 0, out
        # Every car's row was updated in place from the stream (the page is never reloaded).
        unchanged = sorted(car for car in field if len(seen.get(car, ())) < 2)
        assert not unchanged, f"rows never seen changing lap during the replay: {unchanged} ({seen})"

        state = httpx.get(f"{gateway.url}/live/sessions/{RACE}", timeout=10).json()
        assert {row["car"] for row in state["cars"]} == field
        deadline = time.monotonic() + 30
        while True:  # the stream brings the last rows
            rows = browser.find_elements(By.CSS_SELECTOR, "#field tbody tr")
            laps = [r.find_element(By.CSS_SELECTOR, "[data-k=last_lap]").text for r in rows]
            shown = browser.find_element(By.ID, "predictions-made").text
            if (
                len(rows) == len(state["cars"])
                and set(laps) == {str(LAPS)}
                and shown == str(state["predictions_made"])
            ):
                break
            assert time.monotonic() < deadline, f"page shows laps {laps}, predictions {shown}"
            time.sleep(0.2)

        assert [r.get_attribute("data-car") for r in rows] == [row["car"] for row in state["cars"]]
        for tr, row in zip(rows, state["cars"], strict=True):
            for key, text in _expected_cells(row).items():
                assert tr.find_element(By.CSS_SELECTOR, f"[data-k={key}]").text == text, (row["car"], key)
        hit = state["hit_rate"]
        assert browser.find_element(By.ID, "hit-share").text == f"{100 * hit['share']:.1f}%"
        assert browser.find_element(By.ID, "hit-count").text == f"({hit['inside']} of {hit['judged']})"
        assert browser.find_element(By.ID, "laps-ingested").text == str(state["laps_ingested"])
        # The chart: the leader's laps, one dot per timed lap, coloured by the API's judgement.
        leader = state["cars"][0]
        assert browser.find_element(By.ID, "chart-car").text == leader["car"]
        dots = browser.find_elements(By.CSS_SELECTOR, "#chart circle")
        assert len(dots) == sum(p["lap_time_s"] is not None for p in leader["laps"])
        judged = {c["lap"] + 1: c["inside"] for c in leader["corridors"] if c["inside"] is not None}
        for dot in dots:
            inside = judged.get(int(dot.get_attribute("data-lap")))
            assert dot.get_attribute("class") == ("axis" if inside is None else "in" if inside else "out")
        if os.environ.get("STRATEGIST_LIVE_SCREENSHOT"):
            browser.save_screenshot(os.environ["STRATEGIST_LIVE_SCREENSHOT"])
    finally:
        gateway.stop()

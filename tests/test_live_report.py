"""The live report: the engine rebuilds report/index.html every `report.every` experiments in a
background process, and `python -m evolve.report RUN --serve` serves it with automatic reload,
watched here by a real headless Chromium through its DevTools protocol."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from evolve.config import ConfigError, validate
from evolve.live_report import LiveReport, refresh_due
from evolve.report.serve import MISSING, make_server, version_of, with_reload

ROOT = Path(__file__).resolve().parents[1]
LANDSCAPE = ROOT / "tests" / "tasks" / "landscape"
CHROMIUM = shutil.which("chromium")
# A 1 s budget: the experiments after the first refresh take longer than a report build (~3 s on a
# loaded 2-core machine); at 0.05 s a run could end first, and the final report supersede the refresh.
COMMON = ("task=custom", f"task.dir={LANDSCAPE}", "task.budget_s=1", "task.grace_s=20", "llm=none",
          "run.live=false", "+islands=2", "report.every=4")


# ---- pure parts ------------------------------------------------------------------------------------------
def test_refresh_is_due_every_n_recorded_experiments():
    assert [n for n in range(1, 13) if refresh_due(n, 0, 4)] == list(range(4, 13))
    assert not refresh_due(7, 4, 4) and refresh_due(8, 4, 4)
    assert refresh_due(101, 0, 10)                     # a resumed run refreshes at its first record
    assert not any(refresh_due(n, 0, 0) for n in range(50))   # 0 = off


def test_report_every_is_validated():
    from tests.test_environment import _config

    assert _config().report.every == 10
    validate(_config("report.every=0"), 2)
    with pytest.raises(ConfigError, match=r"report.every=-1 is not allowed; expected an integer >= 0"):
        validate(_config("report.every=-1"), 2)


def test_served_page_gets_the_reload_script_and_the_file_does_not(tmp_path):
    html = "<html><body><h1>r</h1></body></html>"
    served = with_reload(html, "/index.html", '12-"34"', poll_ms=500)
    assert served.startswith("<html><body><h1>r</h1>") and served.endswith("</body></html>")
    assert 'seen = "12-\\"34\\""' in served and "every = 500" in served and "location.reload()" in served
    assert with_reload("no body", "/a.html", "1").startswith("no body\n<div id=\"evolve-live\"")
    assert version_of(None) == MISSING
    page = tmp_path / "index.html"
    page.write_text("a")
    first = version_of(page.stat())
    os.utime(page, ns=(1, 1))
    assert version_of(page.stat()) != first


def test_server_serves_files_pages_and_versions(tmp_path):
    import threading

    (tmp_path / "index.html").write_text("<html><body>hello</body></html>")
    (tmp_path / "plot.png").write_bytes(b"\x89PNG not really")
    (tmp_path.parent / "secret.txt").write_text("outside")
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/") as r:
            assert r.headers["Cache-Control"] == "no-store"
            body = r.read().decode()
        assert "hello" in body and "<script" in body
        assert "<script" not in (tmp_path / "index.html").read_text()
        with urllib.request.urlopen(base + "/plot.png") as r:
            assert r.read() == b"\x89PNG not really" and r.headers["Cache-Control"] == "no-store"
        with urllib.request.urlopen(base + "/__version__?page=/index.html") as r:
            assert r.read().decode() == version_of((tmp_path / "index.html").stat())
        with urllib.request.urlopen(base + "/__version__?page=/gone.html") as r:
            assert r.read().decode() == MISSING
        for path in ("/gone.html", "/../secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path)
            assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


# ---- the refresher with real processes -------------------------------------------------------------------
def test_a_slow_refresh_never_delays_the_caller_and_never_doubles(tmp_path):
    marker = tmp_path / "runs.txt"
    slow = [sys.executable, "-c", f"import time; open({str(marker)!r}, 'a').write('x'); time.sleep(1.5)"]
    live = LiveReport(tmp_path, every=2, command=slow)
    t0 = time.monotonic()
    for n in range(1, 9):          # due at 2; 4, 6 and 8 arrive while that refresh still runs
        live.after_record(n)
    assert time.monotonic() - t0 < 0.5
    deadline = time.monotonic() + 10
    while live.process is not None and time.monotonic() < deadline:
        time.sleep(0.1)
        live.after_record(8)       # collects the first; 8 - 2 >= 2: starts the next at once
        if live.refreshed_at == 8:
            break
    assert live.refreshed_at == 8
    live.finish(9)                 # stops the one in flight (out of date), then the final one
    assert marker.read_text() in ("xx", "xxx")    # the stopped one may not have got as far as writing
    log = (tmp_path / "logs" / "report.log").read_text()
    assert re.findall(r"(refresh|final report) after (\d+) experiments: (ok|superseded)", log) == [
        ("refresh", "2", "ok"), ("refresh", "8", "superseded"), ("final report", "9", "ok")]


def test_a_failing_refresh_is_logged_and_the_run_goes_on(tmp_path, capsys):
    live = LiveReport(tmp_path, every=1, command=[sys.executable, "-c", "import sys; sys.exit('boom')"])
    live.after_record(1)
    live.process.wait()
    live.after_record(2)
    live.process.wait()            # failed before the end (one in flight would be superseded, not failed)
    live.finish(2)
    log = (tmp_path / "logs" / "report.log").read_text()
    assert log.count("FAILED (exit 1") == 3 and "boom" in log
    said = capsys.readouterr().out
    assert said.count("the live report failed") == 1 and "(refresh after 1 experiments: exit 1" in said   # once
    short = tmp_path / "short"       # fewer experiments than report.every and no report yet: no final one
    LiveReport(short, every=5, command=[sys.executable, "-c", ""]).finish(3)
    assert not (short / "logs").exists()
    missing = LiveReport(tmp_path, every=1, command=[str(tmp_path / "no-such-program")])
    missing.after_record(1)        # cannot even start: logged, no exception
    assert "FAILED (FileNotFoundError" in log + (tmp_path / "logs" / "report.log").read_text()


# ---- a real run, served, watched by a real browser --------------------------------------------------------
class Browser:
    """Headless Chromium on one page, asked through its DevTools protocol (a websocket)."""

    def __init__(self, url: str, profile: Path):
        profile.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1400,2000", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = self._devtools_port()

    def _devtools_port(self) -> int:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if active.exists() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise AssertionError("chromium did not open its DevTools port")

    def evaluate(self, expression: str):
        import aiohttp

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list") as r:
            page = next(t for t in json.load(r) if t["type"] == "page")

        async def ask():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    await ws.send_json({"id": 1, "method": "Runtime.evaluate",
                                        "params": {"expression": expression, "returnByValue": True}})
                    async for msg in ws:
                        data = msg.json()
                        if data.get("id") == 1:
                            return data["result"]["result"].get("value")

        return asyncio.run(ask())

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except Exception:  # noqa: BLE001 - a page being reloaded has no context for a moment
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"the page never satisfied {expression!r} (last: {value!r})")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run_evolve(run_dir: Path, max_experiments: int) -> str:
    done = subprocess.run([sys.executable, "-m", "evolve", *COMMON, f"run.max_experiments={max_experiments}",
                           f"run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (CI installs it: .ci/run)")
def test_a_run_watched_live_in_a_browser(tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; in CI, .ci/run installs it with apt-get")
    run_dir = tmp_path / "run"
    out = run_evolve(run_dir, 14)
    index = run_dir / "report" / "index.html"
    # the engine wrote the report by itself: during the run (from 4 experiments on) and at the end
    assert f"[evolve] report: {index}" in out
    log = (run_dir / "logs" / "report.log").read_text()
    during = [int(n) for n in re.findall(r"refresh after (\d+) experiments: ok", log)]
    assert during and during[0] == 4 and max(during) <= 14, log
    assert re.findall(r"final report after (\d+) experiments: ok", log) == ["14"], log
    assert "finished: 14 experiments" in index.read_text() and "<script" not in index.read_text()

    server = subprocess.Popen([sys.executable, "-m", "evolve.report", str(run_dir), "--serve", "--port", "0"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    browser = None
    try:
        url = None
        for line in server.stdout:
            found = re.search(r"at (http://127\.0\.0\.1:\d+/index\.html)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the server never said where it serves"
        browser = Browser(url, tmp_path / "profile")
        text = browser.wait_for("document.readyState === 'complete' && document.body.innerText")
        assert "finished: 14 experiments" in text and "live: reloads when the report changes" in text
        assert browser.evaluate("document.images.length >= 4 && [...document.images].every(i => i.naturalWidth > 0)")
        browser.evaluate("window.evolveProbe = 1")     # gone once the page has really reloaded

        out = run_evolve(run_dir, 20)                  # the run resumes; the engine refreshes as it goes
        text = browser.wait_for("!window.evolveProbe && document.body.innerText.includes('finished: 20 experiments')"
                                " && document.body.innerText")
        assert "20 experiments" in text
        assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    finally:
        if browser:
            browser.close()
        server.kill()
        server.wait()

"""The live page at `/` in real headless Chromium (Debian's), driven over the
DevTools protocol while readings arrive at a real `mpseal receive`: uPlot
time charts (from npm, served by the receiver), range switch, hover values,
the sortable fleet table with 60 devices, hostile values (NaN, `constructor`,
`__proto__`, long strings), no console error, and the page without uPlot.
Screenshots are kept in build/artefacts/ (git-ignored)."""
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest
import websockets

import mpseal
from mpseal import payload
from conftest import REPO
from mpseal_host.ingest import Ingestor
from mpseal_host.storage import Storage
from receiver_helpers import RunningReceiver

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1200,800",
]


class Browser:
    def __init__(self, url, profile):
        self.proc = subprocess.Popen(
            [CHROMIUM] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile, "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.time() + 60
        port = None
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = found and int(found.group(1))
        if port is None:
            self.proc.kill()
            pytest.fail("chromium did not start its DevTools endpoint")
        pages = []
        while not pages and time.time() < deadline:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
            time.sleep(0.1)
        self.ws_url = pages[0]["webSocketDebuggerUrl"]

    def close(self):
        self.proc.terminate()  # lets chromium take its helper processes down with it
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.errors = []  # console errors, exceptions and failed loads, as text

    def _event(self, message):
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append("exception: %s" % json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console.%s: %s" % (params["type"], json.dumps(params.get("args"))[:500]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append("log: %s %s" % (params["entry"].get("text"), params["entry"].get("url", "")))

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if "method" in message:
                self._event(message)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(message["error"])
                return message["result"]

    async def js(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if await self.js(expression):
                return
            await asyncio.sleep(0.2)
        state = await self.js("document.body.innerText")
        raise AssertionError("page never showed %s; it shows:\n%s" % (expression, state))


ARTEFACTS = os.path.join(REPO, "build", "artefacts")
CHART = "document.querySelector('#devices [data-device=\"%s\"] .chart[data-field=\"%s\"]')"


def keep(png, name, tmp_path):
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / name).write_bytes(png)
    os.makedirs(ARTEFACTS, exist_ok=True)
    with open(os.path.join(ARTEFACTS, name), "wb") as f:
        f.write(png)


def need_chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("no chromium at %s: run 'make system-deps'" % CHROMIUM)


async def open_page(browser):
    ws = await websockets.connect(browser.ws_url, max_size=None)
    page = Page(ws)
    for domain in ("Runtime", "Log", "Page"):
        await page.call(domain + ".enable")
    await page.call("Page.reload", ignoreCache=True)  # everything from here on is seen
    return ws, page


async def hover_value(page, device, field):
    """Moves the mouse to the middle of a chart; returns the legend's value text."""
    box = await page.js("(() => { const r = (%s).querySelector('.u-over').getBoundingClientRect();"
                        " return [r.x + r.width - 2, r.y + r.height / 2]; })()" % (CHART % (device, field)))
    await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
    await asyncio.sleep(0.1)  # one animation frame for uPlot's legend; the value is then read, not timed
    return await page.js("(%s).querySelector('.u-legend .u-series:nth-child(2) .u-value').textContent" % (CHART % (device, field)))


def run_in_browser(url, tmp_path, drive):
    browser = Browser(url, tempfile.mkdtemp(dir=str(tmp_path), prefix="chromium-"))

    async def main():
        ws, page = await open_page(browser)
        try:
            return await drive(page)
        finally:
            await ws.close()

    try:
        return asyncio.run(main())
    finally:
        browser.close()


def test_one_device_time_chart_range_switch_hover_and_rejections(tmp_path):
    need_chromium()
    db = str(tmp_path / "db.sqlite")
    storage = Storage(db)
    device = storage.add_device("greenhouse")
    storage.close()
    receiver = RunningReceiver(db)
    key = device.master_key

    def send(seq, temperature):
        packet = mpseal.seal(key, device.id, seq, payload.encode_values({"temperature": temperature, "humidity": 40 + seq}))
        assert receiver.udp_exchange(packet) is not None

    send(1, 20.1)  # one reading: the chart shows a point, not an empty box

    async def drive(page):
        await page.wait_for("document.body.dataset.charts === 'uplot' && (%s) && (%s).dataset.points === '1'"
                            % (CHART % ("greenhouse", "temperature"), CHART % ("greenhouse", "temperature")))
        for seq in range(2, 6):
            send(seq, 20 + seq / 10)
        receiver.udp_exchange(mpseal.seal(os.urandom(32), device.id, 9, b"\x02"), timeout=0.3)  # forged
        await page.wait_for("(%s).dataset.points === '5'" % (CHART % ("greenhouse", "temperature")), timeout=30)
        await page.wait_for("document.querySelector('#rejections tr[data-reason=\"bad_tag\"]') !== null")
        chart = CHART % ("greenhouse", "temperature")
        assert await page.js("(%s).dataset.xSpan" % chart) == "3600"
        # a time axis: uPlot's x axis with clock-time tick labels
        assert await page.js("(%s).querySelector('canvas') !== null" % chart)
        ticks = (await page.js("(%s).dataset.xTicks" % chart) or "").split(" | ")
        assert len(ticks) >= 3 and sum(":" in t for t in ticks) >= 2, ticks  # clock times across the hour
        hovered = await hover_value(page, "greenhouse", "temperature")
        assert hovered in {"%.1f °C" % (20 + seq / 10) for seq in range(1, 6)}, hovered  # a reading's value, with its unit
        text = await page.js("document.body.innerText")
        assert "5 readings stored" in text and "1 rejected" in text and "ok" in text
        # range switch
        await page.js("document.querySelector('[data-range=\"7d\"]').click()")
        await page.wait_for("document.body.dataset.range === '7d' && (%s).dataset.xSpan === '604800'" % chart)
        await page.js("document.querySelector('[data-range=\"24h\"]').click()")
        await page.wait_for("(%s).dataset.xSpan === '86400' && (%s).dataset.points === '5'" % (chart, chart))
        await page.js("document.querySelector('[data-view=\"table\"]').click()")
        await page.wait_for("document.querySelector('#fleet-table tr[data-device=\"greenhouse\"] [data-col=\"status\"]').textContent === 'ok'")
        await page.js("document.querySelector('[data-view=\"cards\"]').click()")
        shot = await page.call("Page.captureScreenshot", format="png")
        assert page.errors == [], page.errors
        return base64.b64decode(shot["data"])

    try:
        png = run_in_browser(receiver.url + "/", tmp_path, drive)
    finally:
        code, _, err = receiver.stop()
    assert code == 0, err
    keep(png, "page-1-device.png", tmp_path)


HOSTILE = [
    {"t": float("nan"), "constructor": 1.5, "__proto__": 2, "hasOwnProperty": "x", "big": float("inf")},
    {"t": 3.0, "constructor": 2.5, "__proto__": 3, "toString": "y" * 300, "nested": {"__proto__": {"a": 1}}},
]


def fleet_db(path, n=60):
    """n devices with an hour of readings every 3 min, one of them hostile,
    one synthetic, one with a single reading, one late, one silent."""
    storage = Storage(path)
    ingestor = Ingestor(storage)
    now = time.time()
    for i in range(n):
        name = {0: "constructor", 1: "single", 2: "late-one", 3: "silent-one", 4: "synthetic-one"}.get(i, "node-%02d" % i)
        device = storage.add_device(name)
        if name == "constructor":
            for seq, obj in enumerate(HOSTILE, 1):
                packet = mpseal.seal(device.master_key, device.id, seq, payload.encode_json(obj))
                ingestor.ingest([(packet, "http")], now=now - 60 * (3 - seq))
            continue
        count = 1 if name == "single" else 20
        shift = {"late-one": 500, "silent-one": 7200}.get(name, 0)
        for seq in range(1, count + 1):
            values = {"temperature": 15 + i / 4 + seq / 10, "battery": 3.0 + i / 100, "rssi": -50 - i}
            if name == "synthetic-one":
                values["synthetic"] = 1
            packet = mpseal.seal(device.master_key, device.id, seq, payload.encode_values(values))
            ingestor.ingest([(packet, "udp")], now=now - shift - 180 * (count - seq))
    storage.close()


def test_sixty_devices_table_cards_and_hostile_values(tmp_path):
    need_chromium()
    db = str(tmp_path / "fleet.sqlite")
    fleet_db(db)
    receiver = RunningReceiver(db)
    row = "document.querySelector('#fleet-table tr[data-device=\"%s\"] [data-col=\"%s\"]').textContent"

    async def drive(page):
        await page.wait_for("document.body.dataset.view === 'table' && "
                            "document.querySelectorAll('#fleet-table tbody tr').length === 60")
        assert await page.js(row % ("late-one", "status")) == "late"
        assert await page.js(row % ("silent-one", "status")) == "silent"
        assert await page.js(row % ("node-10", "status")) == "ok"
        assert await page.js(row % ("node-10", "battery")) == "3.1 V \u2192"  # steady over the hour
        assert await page.js(row % ("node-10", "interval")) == "3 min"
        assert await page.js("document.querySelector('#fleet-table tr[data-device=\"synthetic-one\"] [data-badge=\"synthetic\"]') !== null")
        # sortable: by battery, then reversed
        await page.js("document.querySelector('th[data-sort=\"battery\"]').click()")
        order = await page.js("Array.from(document.querySelectorAll('#fleet-table tbody tr')).map(r => r.dataset.device)")
        assert order[0] == "single" and order[-1] == "constructor"  # lowest battery first; no battery last
        await page.js("document.querySelector('th[data-sort=\"battery\"]').click()")
        order = await page.js("Array.from(document.querySelectorAll('#fleet-table tbody tr')).map(r => r.dataset.device)")
        assert order[0] == "node-59"
        await page.js("document.querySelector('th[data-sort=\"last_seen\"]').click()")
        order = await page.js("Array.from(document.querySelectorAll('#fleet-table tbody tr')).map(r => r.dataset.device)")
        assert order[0] == "silent-one"
        table_png = await page.call("Page.captureScreenshot", format="png")

        await page.js("document.querySelector('[data-view=\"cards\"]').click()")
        await page.wait_for("document.querySelectorAll('#devices article.device').length === 60 && "
                            "(%s) !== null" % (CHART % ("node-59", "temperature")))
        card = "document.querySelector('#devices [data-device=\"constructor\"]')"
        values = await page.js("Array.from(%s.querySelectorAll('.value')).map(v => v.dataset.field + '=' + v.querySelector('b').textContent)" % card)
        assert "constructor=2.5" in values and "__proto__=3" in values and any(v.startswith("toString=yyyy") for v in values)
        assert await page.js("(%s).dataset.points" % (CHART % ("constructor", "t"))) == "2"  # NaN point is a gap
        assert await page.js("(%s).dataset.points" % (CHART % ("single", "temperature"))) == "1"
        assert await page.js("document.querySelector('#devices [data-device=\"synthetic-one\"] h2 [data-badge=\"synthetic\"]') !== null")
        assert await page.js("document.querySelector('#devices [data-device=\"synthetic-one\"] .chart[data-field=\"synthetic\"]')") is None
        cards_png = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        assert page.errors == [], page.errors
        return base64.b64decode(table_png["data"]), base64.b64decode(cards_png["data"])

    try:
        table_png, cards_png = run_in_browser(receiver.url + "/", tmp_path, drive)
    finally:
        code, _, err = receiver.stop()
    assert code == 0, err
    keep(table_png, "page-60-devices-table.png", tmp_path)
    keep(cards_png, "page-60-devices-cards.png", tmp_path)


def test_page_without_uplot_still_shows_values_and_says_so(tmp_path):
    need_chromium()
    db = str(tmp_path / "db.sqlite")
    fleet_db(db, n=3)
    storage = Storage(db)  # one reading that came over LoRaWAN: TTN's rssi/snr are stored with it (mpseal ttn)
    device = storage.get_device("single")
    packet = mpseal.seal(device.master_key, device.id, 2, payload.encode_values({"temperature": 9.5}), version=mpseal.VERSION_COMPACT)
    Ingestor(storage).ingest([(packet, "lorawan", None, None, (-101, -3.5))])
    storage.close()
    receiver = RunningReceiver(db, env={"MPSEAL_UPLOT_DIR": str(tmp_path / "no-uplot-here")})

    async def drive(page):
        await page.wait_for("document.body.dataset.charts === 'none' && "
                            "document.querySelector('[data-device=\"late-one\"] [data-field=\"temperature\"] b') !== null")
        note = await page.js("document.getElementById('charts-note').textContent")
        assert "uPlot is not installed" in note
        meta = await page.js("document.querySelector('[data-device=\"single\"] .meta').textContent")
        assert "via lorawan" in meta and "rssi -101 dBm, snr -3.5 dB" in meta, meta
        assert "rssi" not in await page.js("document.querySelector('[data-device=\"late-one\"] .meta').textContent")
        assert await page.js("document.querySelector('.chart')") is None
        assert page.errors == [], page.errors

    try:
        run_in_browser(receiver.url + "/", tmp_path, drive)
    finally:
        code, _, err = receiver.stop()
    assert code == 0, err

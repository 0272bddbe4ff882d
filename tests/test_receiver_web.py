"""The live page at `/` in real headless Chromium (Debian's), driven over the
DevTools protocol while readings arrive at a real `mpseal receive`."""
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

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
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


CARD = "document.querySelector('[data-device=\"greenhouse\"]')"
TEMPERATURE = CARD + " && " + CARD + ".querySelector('[data-field=\"temperature\"] b').textContent"
POINTS = CARD + " && " + CARD + ".querySelector('svg.chart[data-field=\"temperature\"] polyline').dataset.points"


def test_page_shows_values_chart_and_rejections_as_readings_arrive(tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("no chromium at %s: run 'make system-deps'" % CHROMIUM)
    db = str(tmp_path / "db.sqlite")
    storage = Storage(db)
    device = storage.add_device("greenhouse")
    storage.add_device("shed")
    storage.close()
    receiver = RunningReceiver(db)
    key = device.master_key

    def send(seq, temperature):
        packet = mpseal.seal(key, device.id, seq, payload.encode_values({"temperature": temperature, "humidity": 40 + seq}))
        assert receiver.udp_exchange(packet) is not None

    for seq in range(1, 6):
        send(seq, 20 + seq / 10)
    browser = Browser(receiver.url + "/", tempfile.mkdtemp(dir=str(tmp_path), prefix="chromium-"))

    async def drive():
        async with websockets.connect(browser.ws_url, max_size=None) as ws:
            page = Page(ws)
            await page.call("Runtime.enable")
            await page.wait_for("(%s) === '20.5' && (%s) === '5'" % (TEMPERATURE, POINTS))
            # more readings arrive; the page refreshes itself
            for seq in range(6, 9):
                send(seq, 30.0 + seq)
            receiver.udp_exchange(mpseal.seal(os.urandom(32), device.id, 9, b"\x02"), timeout=0.3)  # forged
            await page.wait_for("(%s) === '38' && (%s) === '8'" % (TEMPERATURE, POINTS))
            await page.wait_for("document.querySelector('#rejections tr[data-reason=\"bad_tag\"]') !== null")
            humidity = await page.js(CARD + ".querySelector('svg.chart[data-field=\"humidity\"] polyline')"
                                     ".getAttribute('points').split(' ').length")
            assert humidity == 8
            text = await page.js("document.body.innerText")
            assert "shed" in text and "no readings yet" in text
            assert "8 readings stored" in text and "1 rejected" in text
            shot = await page.call("Page.captureScreenshot", format="png")
            return base64.b64decode(shot["data"])

    try:
        png = asyncio.run(drive())
    finally:
        browser.close()
        code, _, err = receiver.stop()
    assert code == 0, err
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / "page.png").write_bytes(png)
    if os.environ.get("MPSEAL_SCREENSHOT"):  # for a human to look at
        with open(os.environ["MPSEAL_SCREENSHOT"], "wb") as f:
            f.write(png)

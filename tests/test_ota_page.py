"""The page's OTA view in real headless Chromium (as tests/test_receiver_web.py):
each board's running version and its update state, from readings sealed
with app_release / app_on_trial and the update-offers that went out."""
import pytest

import mpseal
from mpseal import control, payload
from mpseal_host.ingest import Ingestor
from mpseal_host.storage import Storage
from receiver_helpers import RunningReceiver
from test_receiver_web import need_chromium, run_in_browser

pytestmark = pytest.mark.slow

OFFER = control.update_offer(2, b"\0" * 32, b"http://127.0.0.1:1/ota/wemos/2/")


def fleet(path):
    """Readings 1-2 run v1, the offer goes out on 2's ack, reading 3 says what runs."""
    storage = Storage(path)
    ingestor = Ingestor(storage)
    third = {"updated": {"app_release": 2}, "on-trial": {"app_release": 2, "app_on_trial": 1},
             "failed": {"app_release": 1}, "offered": None, "factory": {"temperature": 20.0}}
    for name, last in third.items():
        device = storage.add_device(name)

        def send(seq, values):
            ingestor.ingest([(mpseal.seal(device.master_key, device.id, seq, payload.encode_values(values)), "udp")])

        send(1, {"app_release": 1} if name != "factory" else {"temperature": 20.0})
        if name != "factory":
            storage.queue_command(name, OFFER)
        send(2, {"app_release": 1} if name != "factory" else {"temperature": 20.0})
        if last is not None:
            send(3, last)
    storage.close()


def test_the_table_and_cards_show_running_versions_and_update_states(tmp_path):
    need_chromium()
    db = str(tmp_path / "fleet.sqlite")
    fleet(db)
    receiver = RunningReceiver(db)
    cell = "document.querySelector('#fleet-table tr[data-device=\"%s\"] [data-col=\"version\"]').textContent"

    async def drive(page):
        await page.wait_for("document.querySelectorAll('#devices article.device').length === 5")
        meta = await page.js("document.querySelector('#devices [data-device=\"failed\"] .meta').textContent")
        await page.js("document.querySelector('[data-view=\"table\"]').click()")
        await page.wait_for("document.body.dataset.view === 'table' && "
                            "document.querySelectorAll('#fleet-table tbody tr').length === 5")
        shown = {name: await page.js(cell % name) for name in ("updated", "on-trial", "failed", "offered", "factory")}
        assert page.errors == [], page.errors
        return shown, meta

    try:
        shown, meta = run_in_browser(receiver.url + "/", tmp_path, drive)
    finally:
        code, _, err = receiver.stop()
    assert code == 0, err
    assert shown == {"updated": "2", "on-trial": "2 (on trial)", "failed": "1 \u2192 2 (failed)",
                     "offered": "1 \u2192 2 (offered)", "factory": "\u2013"}, shown
    assert "version 1" in meta and "update to 2: failed" in meta, meta

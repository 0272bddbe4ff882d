"""/metrics (checked by the real promtool), readings by time range, CSV and
JSON Lines export (HTTP and `mpseal export`), /api/dashboard, and JSON that
stays valid whatever a device sends. Readings are ingested at fixed past
times through the real pipeline; the receiver is a real `mpseal receive`."""
import csv
import io
import json
import shutil
import subprocess
import time

import pytest

import mpseal
from mpseal import payload
from mpseal_host.ingest import Ingestor
from mpseal_host.storage import Storage
from receiver_helpers import RunningReceiver
from conftest import mpseal_cli

pytestmark = pytest.mark.slow
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z: readings one per minute from here
NAN_DEVICE = "constructor"


def strict_json(body):
    """json.loads that refuses NaN/Infinity, as a browser's JSON.parse does."""
    def refuse(name):
        raise AssertionError("not JSON: bare %s in %s" % (name, body[:200]))

    return json.loads(body, parse_constant=refuse)


@pytest.fixture(scope="module")
def rx(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrations_http")
    db = tmp / "db.sqlite"
    storage = Storage(str(db))
    green = storage.add_device("greenhouse")
    odd = storage.add_device(NAN_DEVICE)
    ingestor = Ingestor(storage)
    for i in range(1, 61):  # an hour of readings, one a minute; the last 10 carry an age
        values = {"temperature": 20 + i / 10, "humidity": 40.0 + i % 7, "battery": 3.7, "rssi": -60 - i % 5}
        if i > 50:
            values["age"] = 120
        packet = mpseal.seal(green.master_key, green.id, i, payload.encode_values(values))
        assert ingestor.ingest([(packet, "udp")], now=T0 + 60 * i)[0][0].status == "stored"
    hostile = [
        {"t": float("nan"), "constructor": 1, "__proto__": {"x": 1}, "big": float("inf")},
        {"t": -float("inf"), "toString": "=HYPERLINK(1)", "s": "x" * 300},
    ]
    for i, obj in enumerate(hostile, 1):
        packet = mpseal.seal(odd.master_key, odd.id, i, payload.encode_json(obj))
        assert ingestor.ingest([(packet, "http")], now=time.time())[0][0].status == "stored"
    storage.close()
    receiver = RunningReceiver(str(db))
    yield receiver
    code, _, err = receiver.stop()
    assert code == 0, err


def test_metrics_pass_promtool_and_show_every_device(rx):
    status, body, headers = rx.get_raw("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    if not shutil.which(PROMTOOL) and not shutil.os.access(PROMTOOL, shutil.os.X_OK):
        pytest.fail("no promtool: run 'make system-deps' (Debian package prometheus)")
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (check.stdout, check.stderr)
    text = body.decode()
    assert 'mpseal_device_value{device="greenhouse",field="temperature",unit="°C"} 26.0' in text
    assert 'mpseal_device_readings_stored_total{device="greenhouse"} 60.0' in text
    assert 'mpseal_device_readings_stored_total{device="constructor"} 2.0' in text
    assert 'mpseal_device_value{device="constructor",field="t",unit=""} -Inf' in text
    assert 'mpseal_device_status{device="greenhouse",status="silent"} 1.0' in text  # its readings are weeks old
    assert "mpseal_receiver_acks_sent_total" in text and "mpseal_receiver_start_time_seconds" in text


def test_api_json_stays_valid_with_nan_and_reserved_names(rx):
    for path in ("/api/devices", "/api/readings/latest", "/api/dashboard?range=7d",
                 "/api/devices/%s/readings?limit=10" % NAN_DEVICE):
        status, body, _ = rx.get_raw(path)
        assert status == 200, (path, body[:300])
        data = strict_json(body)
        assert data
    readings = strict_json(rx.get_raw("/api/devices/%s/readings" % NAN_DEVICE)[1])["readings"]
    assert readings[0]["value"]["t"] == "NaN" and readings[0]["value"]["big"] == "Infinity"
    assert readings[0]["value"]["__proto__"] == {"x": 1} and readings[1]["value"]["t"] == "-Infinity"


def test_readings_by_time_range_carry_measured_time(rx):
    start, end = T0 + 60 * 10, T0 + 60 * 20
    iso_from = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    for query in ("from=%s&to=%s" % (start, end), "from=%s&to=%s" % (iso_from, end)):
        status, data = rx.get("/api/devices/greenhouse/readings?" + query)
        assert status == 200, data
        assert [r["seq"] for r in data["readings"]] == list(range(10, 20))
    assert data["readings"][0]["measured_at"] == data["readings"][0]["received_at"] == start
    assert data["readings"][0]["time_source"] == "arrival"
    aged = rx.get("/api/devices/greenhouse/readings?from=%s" % (T0 + 60 * 55))[1]["readings"]
    assert [r["seq"] for r in aged] == list(range(55, 61))
    assert all(r["time_source"] == "age" and r["measured_at"] == r["received_at"] - 120 for r in aged)
    status, data = rx.get("/api/devices/greenhouse/readings?from=yesterday")
    assert status == 400 and data["error"] == "bad_query" and "ISO 8601" in data["detail"]
    status, data = rx.get("/api/devices/greenhouse/readings?from=%s&to=%s" % (end, start))
    assert status == 400


def test_csv_download_for_a_time_range(rx):
    status, body, headers = rx.get_raw("/api/devices/greenhouse/export?format=csv&from=%s&to=%s" % (T0 + 60 * 48, T0 + 60 * 53))
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'filename="greenhouse.csv"' in headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [int(r["seq"]) for r in rows] == [48, 49, 50, 51, 52]
    assert rows[0]["temperature"] == "24.8" and rows[0]["age"] == "" and rows[3]["age"] == "120"
    assert rows[3]["time_source"] == "age" and float(rows[3]["measured_at_unix"]) == T0 + 60 * 51 - 120
    assert rows[0]["received_at"].endswith("Z") and rows[0]["device"] == "greenhouse"
    # formulas from a device never reach a spreadsheet as formulas
    hostile = rx.get_raw("/api/devices/%s/export?format=csv" % NAN_DEVICE)[1].decode()
    cells = list(csv.DictReader(io.StringIO(hostile)))
    assert cells[1]["toString"] == "'=HYPERLINK(1)" and cells[0]["t"] == "NaN"
    assert rx.get("/api/devices/nobody/export")[0] == 404
    assert rx.get("/api/devices/greenhouse/export?format=xls")[0] == 400


def test_mpseal_export_cli_csv_and_jsonl(rx, tmp_path):
    result = mpseal_cli("export", "--db", rx.db, "--device", "greenhouse", "--from", str(T0 + 60 * 58), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [strict_json(line) for line in result.stdout.decode().splitlines()]
    assert [r["seq"] for r in lines] == [58, 59, 60] and lines[0]["value"]["age"] == 120
    out = tmp_path / "g.csv"
    result = mpseal_cli("export", "--db", rx.db, "--device", "greenhouse", "--to", "2026-11-18T11:00:00Z", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().count("\n") == 1  # header only: nothing arrived before T0
    result = mpseal_cli("export", "--db", rx.db, "--device", "greenhouse", "--from", "soon")
    assert result.returncode != 0 and result.stderr.decode().startswith("mpseal: ") and b"Traceback" not in result.stderr
    result = mpseal_cli("export", "--db", rx.db, "--device", "nobody")
    assert result.returncode != 0 and b"no device" in result.stderr


def test_dashboard_is_one_request_with_status_health_and_series(rx):
    status, data = rx.get("/api/dashboard?range=7d")
    assert status == 200
    devices = {d["name"]: d for d in data["devices"]}
    green = devices["greenhouse"]
    assert green["interval_source"] == "estimated" and green["interval_s"] == 60.0
    assert green["status"] == "silent" and green["health"]["battery"] == 3.7 and green["health"]["signal"] == -60
    assert green["series"] is not None  # range is by arrival: weeks-old readings fall outside 7d
    assert data["units"] == {} or "temperature" in data["units"]
    assert rx.get("/api/dashboard?range=forever")[0] == 400

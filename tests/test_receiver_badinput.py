"""Hostile and broken input against a real `mpseal receive`: every kind is
counted, answered (HTTP 4xx with a reason, UDP silence), never stored, and the
process keeps serving."""
import json
import os
import random
import socket
import urllib.error
import urllib.request

import pytest

import mpseal
from mpseal import payload
from mpseal_host.storage import Storage
from receiver_helpers import RunningReceiver

pytestmark = pytest.mark.slow
READING = payload.encode_values({"temperature": 21.5})


@pytest.fixture
def setup(tmp_path):
    db = str(tmp_path / "db.sqlite")
    storage = Storage(db)
    device = storage.add_device("greenhouse")
    storage.close()
    receiver = RunningReceiver(db)
    yield receiver, device
    code, _, err = receiver.stop()
    assert code == 0, err
    assert device.master_key.hex() not in err


def stats(receiver):
    return receiver.get("/api/stats")[1]


def stored_count(receiver):
    return stats(receiver)["stored"]


def test_udp_garbage_gets_silence_and_is_counted(setup):
    receiver, device = setup
    rng = random.Random(1234)
    good = mpseal.seal(device.master_key, device.id, 1, READING)
    bad = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600))) for _ in range(200)]
    bad += [good[:n] for n in range(0, len(good))]  # every truncation
    bad += [os.urandom(3000)]  # oversize datagram
    for i in range(len(good) * 8):  # every single bit flip
        b = bytearray(good)
        b[i // 8] ^= 1 << (i % 8)
        bad.append(bytes(b))
    receiver.sock.settimeout(0.2)
    for packet in bad:
        receiver.sock.sendto(packet, receiver.udp)
    with pytest.raises(socket.timeout):
        receiver.sock.recvfrom(4096)  # silence
    s = stats(receiver)
    assert s["rejected"] == len(bad) and s["stored"] == 0
    assert {"truncated", "bad_tag", "oversize"} <= set(s["rejected_by_reason"])
    assert receiver.alive()
    assert receiver.udp_exchange(good) is not None, "still serving after the flood"
    assert stored_count(receiver) == 1


def test_udp_replay_of_a_packet_older_than_the_window(setup):
    receiver, device = setup
    first = mpseal.seal(device.master_key, device.id, 1, READING)
    assert receiver.udp_exchange(first) is not None
    assert receiver.udp_exchange(mpseal.seal(device.master_key, device.id, 200, READING)) is not None
    # seq 1 is stored: its replay is acked again (it tells an eavesdropper nothing new), not stored
    assert receiver.udp_exchange(first) is not None
    never = mpseal.seal(device.master_key, device.id, 2, READING)  # too old and never stored
    assert receiver.udp_exchange(never, timeout=0.5) is None
    s = stats(receiver)
    assert (s["stored"], s["duplicates"], s["rejected_by_reason"]) == (2, 1, {"too_old": 1})


BAD_BODIES = [
    ("wrong content type", b"hello", "text/plain", 415, "bad_content_type"),
    ("json", b'{"seq": 1}', "application/json", 415, "bad_content_type"),
    ("empty", b"", "application/octet-stream", 400, "truncated"),
    ("oversize", os.urandom(100_000), "application/octet-stream", 413, "oversize"),
    ("random", bytes([1]) + os.urandom(70), "application/octet-stream", 400, "bad_length"),
]


# ids by name: the random bodies differ per process, and the test workers
# (pytest-xdist) must collect the same test names
@pytest.mark.parametrize("name, body, content_type, status, reason", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_http_bad_bodies(setup, name, body, content_type, status, reason):
    receiver, _ = setup
    got, text, _ = receiver.post(body, content_type)
    assert (got, json.loads(text)["error"]) == (status, reason), name
    s = stats(receiver)
    assert s["rejected_by_reason"] == {reason: 1} and s["stored"] == 0


def test_http_auth_failures_and_replays(setup):
    receiver, device = setup
    key = device.master_key
    cases = [
        (mpseal.seal(key, 77, 1, READING), 403, "unknown_device"),
        (mpseal.seal(key, device.id, 1, READING, epoch=9), 403, "unknown_epoch"),
        (mpseal.seal(os.urandom(32), device.id, 1, READING), 403, "bad_tag"),
        (mpseal.seal(key, device.id, 1, READING, type=mpseal.TYPE_ACK), 400, "bad_type"),
    ]
    for packet, status, reason in cases:
        got, text, _ = receiver.post(packet)
        assert (got, json.loads(text)) == (status, {"error": reason})
    good = mpseal.seal(key, device.id, 1, READING)
    assert receiver.post(good)[0] == 200
    status, _, headers = receiver.post(good)
    assert status == 200 and headers["X-Mpseal-Status"] == "duplicate"
    s = stats(receiver)
    assert s["stored"] == 1 and s["duplicates"] == 1 and s["rejected"] == 4


def test_http_wrong_method_and_unknown_path(setup):
    receiver, _ = setup
    request = urllib.request.Request(receiver.ingest_url + "/api/ingest", method="GET")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=5)
    assert exc.value.code == 405
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(receiver.url + "/api/nothing-here", timeout=5)
    assert exc.value.code == 404
    assert receiver.alive() and stats(receiver)["stored"] == 0

"""What happens to a packet: mpseal_host.pipeline through Ingestor, on each
real storage backend (a SQLite file, a PostgreSQL database; no sockets)."""
import os
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpseal
from mpseal import control, payload
from mpseal_host.ingest import Ingestor, RejectionLog
from mpseal_host.pipeline import DUPLICATE, REJECTED, STORED
from mpseal_host.storage import Storage, open_storage

READING = payload.encode_values({"temperature": 21.5, "humidity": 40.2})


@pytest.fixture
def db(db_location):
    return db_location


@pytest.fixture
def storage(db):
    s = open_storage(db)
    yield s
    s.close()


@pytest.fixture
def device(storage):
    return storage.add_device("greenhouse")


def set_host_seq(storage, device_id, value):
    """A counter no API sets (it only ever rises by use), set for the test."""
    if hasattr(storage, "conn"):  # PostgreSQL
        storage.conn.execute("UPDATE devices SET host_seq = %s WHERE id = %s", (value, device_id))
    else:
        storage.db.execute("UPDATE devices SET host_seq = ? WHERE id = ?", (value, device_id))


def one(ingestor, packet, transport="udp", sender=None):
    item = (packet, transport) if sender is None else (packet, transport, sender)
    return ingestor.ingest([item])[0]


def open_ack(device, ack, epoch=None):
    header, body = mpseal.unseal(ack, device.master_key if epoch is None else epoch, direction=mpseal.TO_DEVICE)
    return header, control.decode_ack(body)


def stored_seqs(storage, name="greenhouse"):
    return [r["seq"] for r in storage.readings(name, limit=10000)]


def test_reading_is_stored_and_acked(storage, device):
    ingestor = Ingestor(storage)
    outcome, ack = one(ingestor, mpseal.seal(device.master_key, device.id, 1, READING))
    assert outcome.status == STORED and outcome.value == {"temperature": 21.5, "humidity": 40.2}
    header, (acked, commands) = open_ack(device, ack)
    assert header.type == mpseal.TYPE_ACK and header.seq == 1 and acked == 1 and commands == []
    assert storage.readings("greenhouse")[0]["value"] == {"temperature": 21.5, "humidity": 40.2}
    saved = storage.get_device("greenhouse")
    assert (saved.last_seq, saved.last_transport, saved.stored, saved.host_seq) == (1, "udp", 1, 1)
    assert mpseal.ReplayWindow.from_bytes(saved.replay_window).highest == 1


def test_retransmission_gets_the_same_ack_bytes_and_is_stored_once(storage, device):
    ingestor = Ingestor(storage)
    packet = mpseal.seal(device.master_key, device.id, 5, READING)
    first = one(ingestor, packet)
    again = one(Ingestor(storage), packet)  # a fresh cache: the ack comes from the database
    same_batch = ingestor.ingest([(packet, "udp"), (packet, "http")])
    assert first[0].status == STORED
    assert [again[0].status] + [o.status for o, _ in same_batch] == [DUPLICATE] * 3
    assert [again[1]] + [a for _, a in same_batch] == [first[1]] * 3, "a duplicate gets the first copy's ack bytes"
    assert open_ack(device, first[1])[1] == (5, [])
    assert stored_seqs(storage) == [5]
    saved = storage.get_device("greenhouse")
    assert (saved.stored, saved.duplicates, saved.rejected, saved.host_seq) == (1, 3, 0, 1)


def test_a_replay_flood_is_answered_within_the_budget_and_burns_no_host_seq(storage, device):
    clock = [1000.0]
    ingestor = Ingestor(storage)
    ingestor.limiter.clock = lambda: clock[0]
    other = storage.add_device("other")
    packet = mpseal.seal(device.master_key, device.id, 1, READING)
    board = ("10.0.0.5", 4000)
    assert one_from(ingestor, packet, board)[0].status == STORED
    limiter = ingestor.limiter
    answered = {"board": 0, "stranger": 0}
    other_acks = 0
    for second in range(10):
        clock[0] += 1.0
        batch = [(packet, "udp", None, board)] * 500 + [(packet, "udp", None, ("192.0.2.9", 53))] * 500
        batch.append((mpseal.seal(other.master_key, other.id, second + 1, READING), "udp", None, ("10.0.0.6", 4000)))
        results = ingestor.ingest(batch)
        answered["board"] += sum(1 for _, ack in results[:500] if ack is not None)
        answered["stranger"] += sum(1 for _, ack in results[500:1000] if ack is not None)
        other_acks += results[-1][1] is not None
    # per device: at most DEVICE_BURST + DEVICE_RATE * t; a stranger's address: NEW_BURST + NEW_RATE * t
    assert answered["board"] + answered["stranger"] <= limiter.DEVICE_BURST + limiter.DEVICE_RATE * 10
    assert answered["stranger"] <= limiter.NEW_BURST + limiter.NEW_RATE * 10
    assert answered["board"] >= 10  # the real board's retransmissions are still answered
    assert other_acks == 10, "another device lost an ack"
    saved = storage.get_device("greenhouse")
    assert saved.host_seq == 1 and saved.duplicates == 10000
    assert storage.event_counts()["greenhouse"]["reack_limited"] == 10000 - answered["board"] - answered["stranger"]


def one_from(ingestor, packet, source):
    return ingestor.ingest([(packet, "udp", None, source)])[0]


def test_resync_answer_names_the_highest_stored_seq_and_is_bound_to_the_nonce(storage, device):
    ingestor = Ingestor(storage)
    for seq in (3, 1200):
        one(ingestor, mpseal.seal(device.master_key, device.id, seq, READING))
    nonce = os.urandom(16)
    request = mpseal.seal(device.master_key, device.id, 0, control.encode_resync_request(nonce, 2), type=control.TYPE_RESYNC_REQUEST)
    outcome, answer = one(ingestor, request)
    assert outcome.status == "resynced" and outcome.value["reason"] == "seq_store_unreadable"
    header, body = mpseal.unseal(answer, device.master_key, direction=mpseal.TO_DEVICE)
    assert (header.type, header.seq) == (control.TYPE_RESYNC, 0)
    assert control.decode_resync(body) == (nonce, 1200, 2)
    saved = storage.get_device("greenhouse")
    assert (saved.host_seq, saved.stored) == (2, 2)  # a resync uses no sequence number of either direction
    assert storage.event_counts()["greenhouse"]["resync:seq_store_unreadable"] == 1
    forged = bytearray(request)
    forged[-1] ^= 1
    assert one(ingestor, bytes(forged))[0].reason == "bad_tag"


def test_an_ack_that_cannot_be_sealed_costs_no_other_device_its_ack(storage, device):
    other = storage.add_device("other")
    set_host_seq(storage, device.id, mpseal.packet.MAX_SEQ)
    ingestor = Ingestor(storage)
    results = ingestor.ingest([
        (mpseal.seal(device.master_key, device.id, 1, READING), "udp"),
        (mpseal.seal(other.master_key, other.id, 1, READING), "udp"),
    ])
    assert [o.status for o, _ in results] == [STORED, STORED]
    assert results[0][1] is None and open_ack(other, results[1][1])[1] == (1, [])
    assert storage.event_counts()["greenhouse"]["host_seq_exhausted"] == 1
    assert "re-provision" in storage.stats()["counter_warnings"]["greenhouse"]


def test_old_packet_beyond_the_window_is_refused_when_not_stored(storage, device):
    ingestor = Ingestor(storage)
    one(ingestor, mpseal.seal(device.master_key, device.id, 100, READING))
    outcome, ack = one(ingestor, mpseal.seal(device.master_key, device.id, 10, READING))
    assert (outcome.status, outcome.reason, ack) == (REJECTED, "too_old", None)
    # inside the window and never seen: accepted out of order
    assert one(ingestor, mpseal.seal(device.master_key, device.id, 99, READING))[0].status == STORED
    assert stored_seqs(storage) == [99, 100]


def test_same_seq_with_other_payload_is_refused_not_acked(storage, device):
    ingestor = Ingestor(storage)
    one(ingestor, mpseal.seal(device.master_key, device.id, 3, READING))
    outcome, ack = one(ingestor, mpseal.seal(device.master_key, device.id, 3, payload.encode_values({"temperature": 1})))
    assert (outcome.status, outcome.reason, ack) == (REJECTED, "seq_reused", None)
    assert storage.readings("greenhouse")[0]["value"]["temperature"] == 21.5


def test_every_bit_flip_is_rejected_and_nothing_stored(storage, device):
    ingestor = Ingestor(storage)
    packet = mpseal.seal(device.master_key, device.id, 1, READING)
    flipped = []
    for i in range(len(packet) * 8):
        b = bytearray(packet)
        b[i // 8] ^= 1 << (i % 8)
        flipped.append((bytes(b), "udp"))
    results = ingestor.ingest(flipped)
    assert all(o.status == REJECTED and a is None for o, a in results)
    reasons = {o.reason for o, _ in results}
    assert reasons <= {"bad_tag", "bad_version", "bad_type", "unknown_device", "unknown_epoch", "bad_seq"}
    assert "bad_tag" in reasons
    assert stored_seqs(storage) == []
    assert storage.stats()["rejected"] == len(flipped)


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=700))
def test_random_bytes_never_stored_never_raise(tmp_path_factory, junk):
    s = Storage(str(tmp_path_factory.mktemp("junk") / "db.sqlite"))
    s.add_device("greenhouse")
    outcome, ack = Ingestor(s).ingest([(junk, "udp")])[0]
    assert outcome.status == REJECTED and ack is None and outcome.reason
    assert s.stats()["stored"] == 0 and s.readings("greenhouse") == []
    s.close()


def test_an_authentic_reading_decode_refuses_is_refused_alone(storage, device):
    # validate() once passed a value name given twice, which decode() refuses:
    # the reading then failed while being stored and took its batch with it
    # (every packet storage_error, every board retrying, the bad one forever).
    ingestor = Ingestor(storage)
    twice = payload.encode_values([("temperature", 1.0), ("temperature", 2.0)])
    results = ingestor.ingest([(mpseal.seal(device.master_key, device.id, 1, READING), "udp"),
                               (mpseal.seal(device.master_key, device.id, 2, twice), "udp"),
                               (mpseal.seal(device.master_key, device.id, 3, READING), "udp")])
    assert [(o.status, o.reason) for o, _ in results] == [(STORED, None), (REJECTED, "bad_payload"), (STORED, None)]
    assert stored_seqs(storage) == [1, 3]


_names = st.sampled_from(["temperature", "humidity", "battery", "rssi", "a", "x%y", "\u00e9t\u00e9", 'q"\\'])
_values_payloads = st.lists(
    st.tuples(_names, st.integers(-2**31, 2**31 - 1), st.integers(0, 9)), max_size=5,
).map(lambda items: payload.encode_values([(n, v / 10**d, d) for n, v, d in items if abs(v) / 10**d < 2**31 - 1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_values_payloads, _values_payloads.map(lambda p: p[:-1]), st.binary(max_size=40),
                          st.just(READING)), min_size=1, max_size=12))
def test_stored_value_is_decode_then_value_json_byte_for_byte(payloads):
    # stored_value's layout fast path against the ordinary way, over one
    # device's run of payloads (its last layout carried along, as the pipeline does)
    from mpseal_host.storage.model import value_json
    from mpseal_host.stored_value import stored_value

    layout = None
    for data in payloads:
        try:
            fmt, value = payload.decode(data)
            expected = (fmt, value_json(value))
        except mpseal.InvalidPacket as exc:
            with pytest.raises(mpseal.InvalidPacket) as info:
                stored_value(data, layout)
            assert info.value.reason == exc.reason
            continue
        fmt, text, layout = stored_value(data, layout)
        assert (fmt, text) == expected


def test_rejections_counted_by_reason_and_device(storage, device):
    ingestor = Ingestor(storage)
    key = device.master_key
    ingestor.ingest(
        [
            (b"", "udp"),
            (mpseal.seal(key, 99, 1, READING), "udp"),  # unknown device
            (mpseal.seal(key, device.id, 1, READING, epoch=7), "udp"),  # unknown epoch
            (mpseal.seal(os.urandom(32), device.id, 1, READING), "udp"),  # wrong key
            (mpseal.seal(key, device.id, 1, READING, type=mpseal.TYPE_ACK), "udp"),  # reflected direction
            (mpseal.seal(key, device.id, 2, b"\x09junk"), "udp"),  # authentic, payload undecodable
        ]
    )
    stats = storage.stats()
    assert stats["rejected_by_reason"] == {
        "truncated": 1, "unknown_device": 1, "unknown_epoch": 1, "bad_tag": 1, "bad_type": 1, "bad_payload": 1
    }
    assert stats["rejected_by_device"]["greenhouse"] == {"unknown_epoch": 1, "bad_tag": 1, "bad_type": 1, "bad_payload": 1}
    assert storage.get_device("greenhouse").rejected == 4
    assert stored_seqs(storage) == []


def test_rejection_log_names_device_and_reason_and_survives_a_flood(storage, device, caplog):
    clock = [0.0]
    ingestor = Ingestor(storage, RejectionLog(limit=5, clock=lambda: clock[0]))
    bad = mpseal.seal(os.urandom(32), device.id, 1, READING)
    with caplog.at_level("WARNING", logger="mpseal.receiver"):
        ingestor.ingest([(bad, "udp")] * 50)
        clock[0] = 2.0
        ingestor.ingest([(bad, "http")])
    lines = [r.getMessage() for r in caplog.records]
    assert "rejected device greenhouse (id 1) seq 1 via udp: bad_tag" in lines
    assert len(lines) == 5 + 1 + 1  # 5 lines, the summary of 45 more, the next second's line
    assert any("45 more rejections" in line for line in lines)
    assert storage.stats()["rejected"] == 51
    assert device.master_key.hex() not in " ".join(lines)


def test_sender_must_be_allowed_when_a_list_is_set(storage, device):
    storage.set_allowed_numbers("greenhouse", ["+4915112345678"])
    ingestor = Ingestor(storage)
    packet = mpseal.seal(device.master_key, device.id, 1, READING)
    assert one(ingestor, packet, "sms", "+4900000000")[0].reason == "unknown_sender"
    assert one(ingestor, packet, "sms", "+4915112345678")[0].status == STORED


def test_command_rides_on_the_next_ack_and_its_reack_is_the_same_bytes(storage, device):
    ingestor = Ingestor(storage)
    storage.queue_command("greenhouse", control.set_interval(300))
    first = mpseal.seal(device.master_key, device.id, 1, READING)
    _, ack = one(ingestor, first)
    assert open_ack(device, ack)[1] == (1, [control.set_interval(300)])
    _, reack = one(ingestor, first)  # the ack was lost: the device sends seq 1 again
    assert reack == ack  # same host seq: a board that ran it once refuses it, one that never got it runs it
    _, next_ack = one(ingestor, mpseal.seal(device.master_key, device.id, 2, READING))
    assert open_ack(device, next_ack)[1] == (2, [])
    (_, _, _, sent_at, sent_host_seq, acked_seq), = storage.list_commands("greenhouse")
    assert sent_at is not None and acked_seq == 1 and sent_host_seq == open_ack(device, ack)[0].seq == 1


def test_rotation_accepts_both_epochs_until_the_new_one_is_used(storage, device):
    ingestor = Ingestor(storage)
    new_key = os.urandom(32)
    storage.add_pending_key("greenhouse", 1, new_key)
    old = one(ingestor, mpseal.seal(device.master_key, device.id, 1, READING, epoch=0))
    assert old[0].status == STORED and open_ack(device, old[1])[0].epoch == 0
    assert storage.get_device("greenhouse").pending_epoch == 1
    new = one(ingestor, mpseal.seal(new_key, device.id, 2, READING, epoch=1))
    assert new[0].status == STORED
    header, _ = open_ack(device, new[1], epoch=new_key)  # the ack is sealed under the new key
    assert header.epoch == 1
    assert storage.device_keys("greenhouse") == [(1, new_key, "current")]
    # the retired key no longer opens anything
    late = one(ingestor, mpseal.seal(device.master_key, device.id, 3, READING, epoch=0))
    assert late[0].reason == "unknown_epoch"


def test_a_failed_commit_acks_nothing_and_forgets_the_window(storage, device, db):
    ingestor = Ingestor(storage)
    packet = mpseal.seal(device.master_key, device.id, 1, READING)
    if db.startswith("postgresql://"):  # another session holds the device's row lock
        import psycopg

        blocker = psycopg.connect(db)
        blocker.execute("SELECT 1 FROM devices FOR UPDATE")
        storage.conn.execute("SET lock_timeout = '50ms'")
    else:  # another process holds the write lock
        blocker = sqlite3.connect(db, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        storage.db.execute("PRAGMA busy_timeout=50")
    outcome, ack = one(ingestor, packet)
    assert (outcome.status, outcome.reason, ack) == (REJECTED, "storage_error", None)
    blocker.rollback()
    blocker.close()
    outcome, ack = one(ingestor, packet)  # the device retransmits: stored now, not a "duplicate"
    assert outcome.status == STORED and ack is not None


def test_two_processes_never_both_accept_a_sequence_number(db, storage, device):
    a, b = Ingestor(storage), Ingestor(open_storage(db))
    packet = mpseal.seal(device.master_key, device.id, 1, READING)
    a_first = one(a, mpseal.seal(device.master_key, device.id, 2, READING))  # warms a's cache
    assert one(b, packet)[0].status == STORED
    assert a_first[0].status == STORED
    assert one(a, packet)[0].status == DUPLICATE  # a reloaded the window b wrote
    assert stored_seqs(storage) == [1, 2]
    b.storage.close()

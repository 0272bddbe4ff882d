"""The device registry and database (mpseal_host.storage), on each backend."""
import os
import stat

import pytest

from mpseal import control, payload
from mpseal_host.storage import DeviceExists, NoSuchDevice, Storage, StorageError, open_storage


@pytest.fixture
def storage(db_location):
    s = open_storage(db_location)
    yield s
    s.close()


def test_database_file_and_its_wal_are_private(tmp_path):
    path = tmp_path / "db.sqlite"
    s = Storage(str(path))
    s.add_device("greenhouse")
    for name in ("db.sqlite", "db.sqlite-wal", "db.sqlite-shm"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    s.close()


def test_add_generates_a_key_and_assigns_ids(storage):
    a = storage.add_device("greenhouse")
    b = storage.add_device("shed", key=bytes(range(32)), epoch=3)
    assert (a.id, b.id) == (1, 2)
    assert len(a.master_key) == 32 and a.master_key != b.master_key
    assert (b.master_key, b.epoch) == (bytes(range(32)), 3)
    assert [d.name for d in storage.list_devices()] == ["greenhouse", "shed"]
    assert storage.get_device("shed").id == 2 and storage.get_device(2).name == "shed"
    assert storage.get_device("nope") is None
    assert "master_key" not in storage.get_device(1).public()


def test_add_refuses_duplicates_and_bad_input(storage):
    storage.add_device("greenhouse", device_id=7)
    with pytest.raises(DeviceExists):
        storage.add_device("greenhouse")
    with pytest.raises(DeviceExists):
        storage.add_device("other", device_id=7)
    for name in ("", "has space", "x" * 65, "semi;colon"):
        with pytest.raises(StorageError):
            storage.add_device(name)
    with pytest.raises(StorageError):
        storage.add_device("short-key", key=b"\x01" * 16)
    with pytest.raises(StorageError):
        storage.add_device("bad-epoch", epoch=256)


def test_remove_takes_keys_readings_and_commands(storage):
    import mpseal
    from mpseal_host.ingest import Ingestor

    old = storage.add_device("greenhouse", device_id=5)
    storage.queue_command("greenhouse", control.reboot())
    ingestor = Ingestor(storage)
    assert ingestor.ingest([(mpseal.seal(old.master_key, 5, 1, b"\x00"), "udp")])[0][0].status == "stored"
    storage.remove_device("greenhouse")
    assert storage.list_devices() == []
    with pytest.raises(NoSuchDevice):
        storage.remove_device("greenhouse")
    # the same name and id again start from nothing: no old key, reading or command
    new = storage.add_device("greenhouse", device_id=5)
    assert storage.device_keys(5) == [(new.epoch, new.master_key, "current")]
    assert storage.readings(5) == [] and storage.list_commands(5) == []
    # ...and a receiver that cached the old device notices (its key is gone)
    assert ingestor.ingest([(mpseal.seal(old.master_key, 5, 2, b"\x00"), "udp")])[0][0].reason == "bad_tag"
    assert ingestor.ingest([(mpseal.seal(new.master_key, 5, 1, b"\x00"), "udp")])[0][0].status == "stored"


def test_two_keys_during_a_rotation(storage):
    storage.add_device("greenhouse", key=b"\x01" * 32, epoch=0)
    storage.add_pending_key("greenhouse", 1, b"\x02" * 32)
    assert sorted(storage.device_keys("greenhouse")) == [(0, b"\x01" * 32, "current"), (1, b"\x02" * 32, "pending")]
    assert storage.get_device("greenhouse").pending_epoch == 1
    # a second pending key replaces the unused one: never more than two
    storage.add_pending_key("greenhouse", 2, b"\x03" * 32)
    assert sorted(e for e, _, _ in storage.device_keys("greenhouse")) == [0, 2]
    with pytest.raises(StorageError):
        storage.add_pending_key("greenhouse", 0, b"\x04" * 32)
    storage.set_key("greenhouse", 5, b"\x05" * 32)
    assert storage.device_keys("greenhouse") == [(5, b"\x05" * 32, "current")]


def test_host_sequence_numbers_are_never_reused_across_connections(db_location):
    a, b = open_storage(db_location), open_storage(db_location)
    a.add_device("greenhouse")
    got = [a.next_host_seq("greenhouse"), b.next_host_seq("greenhouse"), a.next_host_seq("greenhouse")]
    assert got == [1, 2, 3]
    a.close()
    b.close()


def test_commands_queue_and_take(storage):
    storage.add_device("greenhouse")
    first = storage.queue_command("greenhouse", control.read_now())
    storage.queue_command("greenhouse", control.set_interval(300))
    assert [row[0] for row in storage.list_commands("greenhouse")][0] == first
    assert storage.take_commands("greenhouse") == [control.read_now(), control.set_interval(300)]
    assert storage.take_commands("greenhouse") == []
    with pytest.raises(NoSuchDevice):
        storage.queue_command("nope", control.reboot())


def test_allowed_numbers(storage):
    storage.add_device("greenhouse")
    storage.set_allowed_numbers("greenhouse", ["+4915112345678"])
    assert storage.get_device("greenhouse").allowed_numbers == ["+4915112345678"]


def test_ttn_ids_and_the_radio_link_of_a_reading(storage):
    """mpseal ttn's registry mapping and TTN's rssi/snr, on each backend (schema SQLite 4, PostgreSQL 3)."""
    import mpseal
    from mpseal_host.ingest import Ingestor

    device = storage.add_device("field", key=bytes(range(32)))
    storage.add_device("other")
    assert storage.get_device("field").ttn_id is None and storage.device_by_ttn_id("eui-1") is None
    storage.set_ttn_id("field", "eui-1")
    assert storage.device_by_ttn_id("eui-1").name == "field" and storage.get_device("field").public()["ttn_id"] == "eui-1"
    with pytest.raises(StorageError, match="belongs to device 'field'"):
        storage.set_ttn_id("other", "eui-1")
    with pytest.raises(StorageError, match="TTN device id"):
        storage.set_ttn_id("other", "EUI 1")
    storage.set_ttn_id("field", None)
    assert storage.device_by_ttn_id("eui-1") is None
    packet = mpseal.seal(device.master_key, device.id, 1, payload.encode_values({"t": 1}), version=2)
    Ingestor(storage).ingest([(packet, "lorawan", None, None, (-117.0, -12.25)), (mpseal.seal(device.master_key, device.id, 2, b"\x02"), "udp")])
    rows = storage.readings("field")
    assert [(r["seq"], r.get("rssi"), r.get("snr")) for r in rows] == [(1, -117.0, -12.25), (2, None, None)]
    assert storage.readings_between("field")[0]["rssi"] == -117.0


def _ingest(storage, device, seqs, now=None):
    import mpseal
    from mpseal_host.ingest import Ingestor

    items = [(mpseal.seal(device.master_key, device.id, s, payload.encode_values({"t": s})), "udp") for s in seqs]
    return Ingestor(storage).ingest(items, now=now)


def test_readings_keep_the_value_decoded_at_ingest_and_filter_by_time(storage):
    device = storage.add_device("greenhouse")
    _ingest(storage, device, [1, 2], now=1_000_000.0)
    _ingest(storage, device, [3], now=1_000_100.0)
    rows = storage.readings("greenhouse")
    assert [(r["seq"], r["value"], r["format"]) for r in rows] == [(1, {"t": 1}, "values"), (2, {"t": 2}, "values"), (3, {"t": 3}, "values")]
    assert [r["seq"] for r in storage.readings("greenhouse", from_time=1_000_050.0)] == [3]
    assert [r["seq"] for r in storage.readings("greenhouse", to_time=1_000_050.0)] == [1, 2]
    assert [r["seq"] for r in storage.readings("greenhouse", since=1, limit=1)] == [3]
    assert storage.latest_readings()["greenhouse"]["seq"] == 3


def test_device_pages_and_the_change_token(db_location, storage):
    for i in range(5):
        storage.add_device("d%d" % i)
    first = storage.device_summaries(limit=2)
    assert [d["name"] for d in first] == ["d0", "d1"] and "master_key" not in first[0]
    rest = storage.device_summaries(after_id=first[-1]["id"], limit=10)
    assert [d["name"] for d in rest] == ["d2", "d3", "d4"] and storage.device_count() == 5
    token = storage.change_token()
    assert storage.change_token() == token  # reading changes nothing
    other = open_storage(db_location)
    try:
        _ingest(other, other.get_device("d3"), [1])  # another connection (process) writes
        changed = storage.change_token()
        assert changed != token
        assert storage.device_summaries(after_id=first[-1]["id"], limit=1)[0]["latest"] is None
        assert storage.device_summaries(after_id=rest[0]["id"], limit=1)[0]["latest"]["seq"] == 1
    finally:
        other.close()


def test_a_foreign_write_refreshes_only_the_device_it_touched(db_location, storage):
    from mpseal_host.ingest import Ingestor

    devices = [storage.add_device("d%d" % i) for i in range(20)]
    ingestor = Ingestor(storage)
    import mpseal

    batch = [(mpseal.seal(d.master_key, d.id, 1, b"\x00"), "udp") for d in devices]
    ingestor.ingest(batch)
    assert ingestor.refreshed == 20
    other = open_storage(db_location)
    other.queue_command("d7", control.reboot())  # e.g. `mpseal command` from another process
    other.close()
    results = ingestor.ingest([(mpseal.seal(d.master_key, d.id, 2, b"\x00"), "udp") for d in devices])
    assert ingestor.refreshed == 21  # d7 alone was reloaded ...
    commands = {r[0].device: mpseal.control.decode_ack(mpseal.unseal(r[1], devices[int(r[0].device[1:])].master_key,
                                                                       direction=mpseal.TO_DEVICE)[1])[1] for r in results}
    assert commands["d7"] == [control.reboot()] and commands["d6"] == []  # ... and its command went out


V1_SCHEMA = """
%s
""" % open(__file__.replace("test_receiver_storage.py", "receiver_schema_v1.sql")).read()


def test_a_database_made_by_the_first_release_upgrades(tmp_path):
    """A file with the v1 schema (what the release before this one created,
    readings WITHOUT ROWID, payloads decoded on read) opens, keeps its data,
    and comes back with stored values and the current schema."""
    import sqlite3

    path = str(tmp_path / "v1.sqlite")
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO devices (id, name, created_at, last_seq) VALUES (3, 'old', 1.0, 2)")
    db.execute("INSERT INTO device_keys VALUES (3, 0, ?, 'current', 1.0)", (b"\x07" * 32,))
    for seq in (1, 2):
        db.execute("INSERT INTO readings VALUES (3, ?, 10.0, 'udp', ?, ?)",
                   (seq, payload.FORMAT_VALUES, payload.encode_values({"t": seq})))
    db.execute("INSERT INTO commands (device_id, opcode, argument, created_at) VALUES (3, 1, x'', 1.0)")
    db.commit()
    db.close()
    storage = Storage(path)
    try:
        from mpseal_host.storage import SCHEMA_VERSION

        assert storage.schema_version() == SCHEMA_VERSION
        assert [r["value"] for r in storage.readings("old")] == [{"t": 1}, {"t": 2}]
        assert storage.latest_readings()["old"]["seq"] == 2
        assert len(storage.list_commands("old")) == 1
        device = storage.get_device("old")
        _ingest(storage, device, [3])
        assert [r["seq"] for r in storage.readings("old")] == [1, 2, 3]
    finally:
        storage.close()
    Storage(path).close()  # opening again is a no-op


def test_a_newer_schema_is_refused_with_a_clear_error(db_location):
    storage = open_storage(db_location)
    storage.close()
    if db_location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_location, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    else:
        import sqlite3

        with sqlite3.connect(db_location) as conn:
            conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="newer than this mpseal"):
        open_storage(db_location)


def test_retention_drops_old_readings(db_location, storage):
    import time

    device = storage.add_device("greenhouse")
    old = time.time() - 100 * 86400  # three months ago
    _ingest(storage, device, [1, 2], now=old)
    _ingest(storage, device, [3])
    assert storage.delete_readings_before(time.time() - 40 * 86400) == 2
    assert [r["seq"] for r in storage.readings("greenhouse")] == [3]
    assert storage.count_readings("greenhouse") == 1
    assert storage.get_device("greenhouse").stored == 3  # counters and windows stay
    if db_location.startswith("postgresql://"):
        assert all(upper > time.time() - 40 * 86400 for _, _, upper in storage.partitions())


def test_acks_and_device_events_are_kept_with_the_batch(storage):
    """What the downlink pipeline persists: a reading's sealed ack (a
    duplicate gets the same bytes back) and per-device event counters."""
    from mpseal_host.pipeline import Batch, DeviceState
    from mpseal_host.storage import NewReading

    device = storage.add_device("greenhouse")
    (dev, keys, has_commands), = storage.ingest_states([device.id])
    state = DeviceState(dev, {}, has_commands)
    batch = Batch(1000.0)
    state.window.update(1)
    state.window.update(2)
    batch.devices[dev.id] = state
    batch.readings += [NewReading(dev.id, 1, 1000.0, "udp", 3, b"\x01", "1", b"ack-1"),
                       NewReading(dev.id, 2, 1000.0, "udp", 3, b"\x02", "2", None)]
    batch.events = {(dev.id, "reack_limited"): 2}
    with storage.ingest_transaction([dev.id], batch.now):
        storage.write_batch(batch)
    later = Batch(1001.0)
    later.acks_kept = [(b"ack-2", dev.id, 2)]
    later.events = {(dev.id, "reack_limited"): 1}
    with storage.ingest_transaction([dev.id], later.now):
        storage.write_batch(later)
    assert storage.stored_reading(dev.id, 1) == (b"\x01", b"ack-1")
    assert storage.stored_reading(dev.id, 2) == (b"\x02", b"ack-2")
    assert storage.stored_reading(dev.id, 3) is None
    assert storage.event_counts() == {"greenhouse": {"reack_limited": 3}}


def test_time_ranges_thinning_arrivals_and_last_sent_commands(storage):
    """The queries the integrations (dashboard, export, fleet status) use."""
    device = storage.add_device("greenhouse")
    for seq in range(1, 21):
        _ingest(storage, device, [seq], now=1_000_000.0 + seq)
    rows = storage.readings_between("greenhouse", 1_000_005.0, 1_000_015.0)
    assert [r["seq"] for r in rows] == list(range(5, 15)) and rows[0]["value"] == {"t": 5}
    assert [r["seq"] for r in storage.readings_between("greenhouse", after_seq=17)] == [18, 19, 20]
    thinned = [r["seq"] for r in storage.readings_between("greenhouse", max_points=5)]
    assert len(thinned) <= 6 and thinned[0] == 1 and thinned[-1] == 20
    assert storage.arrival_times("greenhouse", limit=2) == [(20, 1_000_020.0), (19, 1_000_019.0)]
    storage.queue_command("greenhouse", control.set_interval(300))
    assert storage.last_sent_commands(control.set_interval(300)[0]) == {}  # queued, not sent yet
    _ingest(storage, device, [21])
    assert storage.last_sent_commands(control.set_interval(300)[0]) == {device.id: control.set_interval(300)[1]}


def _query(db_location, sql):
    """Rows of one query on the backend's own driver (what the contract never shows: stored arguments)."""
    if db_location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_location, autocommit=True) as conn:
            return conn.execute(sql).fetchall()
    import sqlite3

    db = sqlite3.connect(db_location)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_api_tokens_are_kept_as_digests_and_revoked(db_location, storage):
    import hashlib

    digest = hashlib.sha256(b"secret token bytes").digest()
    storage.add_token("ops", digest, "admin")
    storage.add_token("grafana", hashlib.sha256(b"other").digest(), "read")
    assert [(n, s) for n, s, _ in storage.list_tokens()] == [("grafana", "read"), ("ops", "admin")]
    assert storage.token_scope(digest) == ("ops", "admin")
    assert storage.token_scope(hashlib.sha256(b"guess").digest()) is None
    assert b"secret token bytes" not in repr(_query(db_location, "SELECT * FROM api_tokens")).encode()
    with pytest.raises(StorageError, match="exists already"):
        storage.add_token("ops", hashlib.sha256(b"x").digest(), "read")
    with pytest.raises(StorageError, match="token name"):
        storage.add_token("../etc", hashlib.sha256(b"y").digest(), "read")
    storage.revoke_token("ops")
    assert storage.token_scope(digest) is None
    with pytest.raises(StorageError, match="no token named"):
        storage.revoke_token("ops")


def _enter_batch(storage, device):
    """Opens and closes an empty ingest transaction; returns the StorageBusy it raised, if any."""
    from mpseal_host.storage import StorageBusy

    try:
        with storage.ingest_transaction([device.id]):
            return "entered"
    except StorageBusy as exc:
        return exc


def _gives_up(call, what="a write to give up waiting for the held lock"):
    """call() in a thread, its result once it returns: a write that waits
    for good (the regression) fails the test instead of hanging it; the
    caller's finally releases the lock, which ends the thread."""
    import threading

    from conftest import wait_until

    result = []
    threading.Thread(target=lambda: result.append(call()), daemon=True).start()
    return wait_until(lambda: result, 60, what)[0]


def test_a_lock_held_past_the_busy_timeout_is_storage_busy_and_nothing_is_written(db_location):
    """Both backends, as the receiver's writer uses them (set_busy_timeout):
    another session holding the batch's lock (SQLite: the one write lock;
    PostgreSQL: the device's row, FOR UPDATE) past the busy timeout is
    StorageBusy with nothing written, so the writer can report the wait and
    try again; once the lock is free the batch stores."""
    from mpseal_host.storage import StorageBusy

    storage, holder = open_storage(db_location), open_storage(db_location)
    try:
        device = storage.add_device("greenhouse")
        storage.set_busy_timeout(0.05)  # PostgreSQL: at least its 1 s slice
        with holder.ingest_transaction([device.id]):
            assert isinstance(_gives_up(lambda: _enter_batch(storage, device)), StorageBusy)
            [(outcome, ack)] = _gives_up(lambda: _ingest(storage, device, [1]))  # no on_busy: the caller gives up
            assert (outcome.status, outcome.reason, ack) == ("rejected", "storage_error", None)
        assert storage.readings("greenhouse") == []
        _ingest(storage, device, [1])  # free again: it stores
        assert [r["seq"] for r in storage.readings("greenhouse")] == [1]
    finally:
        holder.close()
        storage.close()


def test_a_held_row_lock_delays_a_postgresql_batch_until_its_commit_and_loses_nothing(pg_cluster):
    """PostgreSQL without set_busy_timeout (the CLI): a held device row lock
    is waited for as long as it is held; the batch stores once the holder
    commits; meanwhile the stored readings and their acks (what re-acks are
    answered from) read as before, and the wait shows in pg_stat_activity."""
    import threading

    import psycopg

    from conftest import wait_until

    url = pg_cluster.create_database()
    storage, holder = open_storage(url), open_storage(url)
    reader, watcher = open_storage(url, read_only=True), psycopg.connect(url, autocommit=True)
    try:
        device = storage.add_device("greenhouse")
        _ingest(storage, device, [1])
        committed = storage.stored_reading(device.id, 1)
        results = []
        batch = threading.Thread(target=lambda: results.append(_ingest(storage, device, [2])), daemon=True)
        with holder.ingest_transaction([device.id]):
            batch.start()
            wait_until(lambda: watcher.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0], what="the batch waiting for the device's row lock")
            assert results == []  # still waiting: neither stored nor given up
            assert reader.stored_reading(device.id, 1) == committed and committed[1] is not None
            assert [r["seq"] for r in reader.readings("greenhouse")] == [1]
        batch.join(60)
        assert not batch.is_alive()
        [(outcome, ack)] = results[0]
        assert (outcome.status, ack is not None) == ("stored", True)
        assert [r["seq"] for r in storage.readings("greenhouse")] == [1, 2]
    finally:
        watcher.close()
        for s in (reader, holder, storage):
            s.close()


def test_an_operators_postgresql_lock_timeout_is_kept_and_ends_a_wait_as_storage_busy(pg_cluster):
    """An operator's lock_timeout (here in the URL's options, as a role's or
    postgresql.conf's would be) is what a write transaction runs with, also
    once the writer's busy timeout is set; without one the transaction gets
    the writer's slice. A wait past it is StorageBusy, nothing written."""
    from mpseal_host.storage import StorageBusy

    url = pg_cluster.create_database()
    storage, holder = open_storage(url + "?options=-c%20lock_timeout%3D50ms"), open_storage(url)
    try:
        device = storage.add_device("greenhouse")
        for s, busy_timeout, expected in ((storage, None, "50ms"), (storage, 0.25, "50ms"), (holder, 0.25, "1s"),
                                          (holder, 3, "3s")):
            if busy_timeout is not None:
                s.set_busy_timeout(busy_timeout)
            with s._write("reading the lock timeout") as conn:
                assert conn.execute("SHOW lock_timeout").fetchone()[0] == expected
        with holder.ingest_transaction([device.id]):
            assert isinstance(_gives_up(lambda: _enter_batch(storage, device)), StorageBusy)
            [(outcome, ack)] = _gives_up(lambda: _ingest(storage, device, [3]))
            assert (outcome.status, outcome.reason, ack) == ("rejected", "storage_error", None)
        assert storage.readings("greenhouse") == []
        _ingest(storage, device, [3])  # the board retransmits: stored now
        assert [r["seq"] for r in storage.readings("greenhouse")] == [3]
    finally:
        holder.close()
        storage.close()


def test_a_read_only_connection_reads_and_never_writes(db_location, storage):
    device = storage.add_device("greenhouse")
    _ingest(storage, device, [1, 2])
    reader = open_storage(db_location, read_only=True)
    try:
        assert [r["seq"] for r in reader.readings("greenhouse")] == [1, 2]
        assert reader.list_tokens() == []
        with pytest.raises(StorageError):
            reader.add_device("shed")
    finally:
        reader.close()
    assert storage.get_device("shed") is None


def test_rotate_key_arguments_go_once_the_new_key_is_used(db_location, storage):
    import mpseal
    from mpseal_host.ingest import Ingestor
    from mpseal_host.registry import rotate

    device = storage.add_device("greenhouse")
    new_key = os.urandom(32)
    rotate(storage, "greenhouse", new_key)
    ingestor = Ingestor(storage)
    ingestor.ingest([(mpseal.seal(device.master_key, device.id, 1, payload.encode_values({"t": 1})), "udp")])
    arguments = lambda: [bytes(a) for (a,) in _query(db_location, "SELECT argument FROM commands")]
    assert new_key in arguments()[0]  # kept until applied: a lost ack is answered with it again
    outcome, _ = ingestor.ingest([(mpseal.seal(new_key, device.id, 2, payload.encode_values({"t": 2}), epoch=1), "udp")])[0]
    assert outcome.status == "stored"
    assert arguments() == [b""]

"""The device registry and database (mpseal_host.storage), on each backend."""
import os
import stat

import pytest

from mpseal import control
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

"""Secrets hygiene of the receiver side (issue 18): a private database file
whatever it was, keys never needed on a command line, rotate-key arguments
(new keys) gone once applied, device names that cannot be paths."""
import os
import sqlite3
import stat

import pytest

import mpseal
from mpseal import control, payload
from conftest import mpseal_cli
from mpseal_host.ingest import Ingestor
from mpseal_host.storage import Storage, StorageError
from mpseal_host.registry import rotate

READING = payload.encode_values({"temperature": 21.5})


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_existing_world_readable_database_is_made_private(tmp_path, caplog):
    path = str(tmp_path / "db.sqlite")
    Storage(path).close()
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING", logger="mpseal.storage"):
        storage = Storage(path)
    storage.add_device("greenhouse")
    storage.close()
    assert mode(path) == 0o600
    assert any("was mode 0644" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", [".", "..", "../etc", "a/b", "a\\b", "", "-x", ".hidden", "a..b", "tab\there", "x" * 65, "gr\u00fcn", "a b"])
def test_path_like_and_unprintable_device_names_are_refused(tmp_path, name):
    storage = Storage(str(tmp_path / "db.sqlite"))
    with pytest.raises(StorageError) as exc:
        storage.add_device(name)
    assert "device name" in str(exc.value)
    storage.add_device("greenhouse-2.b_c")  # letters, digits, '-', '_' and single dots are fine
    storage.close()


def test_keys_come_from_a_file_or_the_environment_not_the_command_line(tmp_path):
    db = str(tmp_path / "db.sqlite")
    key_file = tmp_path / "shed.key"
    key_file.write_text("cd" * 32 + "\n")
    out = mpseal_cli("devices", "add", "shed", "--key-file", str(key_file), "--db", db)
    assert out.returncode == 0 and b"cd" * 32 not in out.stdout + out.stderr
    env_key = "ef" * 32
    os.environ["MPSEAL_TEST_KEY"] = env_key
    try:
        out = mpseal_cli("devices", "add", "barn", "--key-env", "MPSEAL_TEST_KEY", "--db", db)
    finally:
        del os.environ["MPSEAL_TEST_KEY"]
    assert out.returncode == 0
    out = mpseal_cli("devices", "add", "loft", "--key", "ab" * 32, "--db", db)  # still works (warns on a terminal)
    assert out.returncode == 0 and b"ab" * 32 not in out.stdout
    assert b"discouraged" in mpseal_cli("devices", "add", "--help").stdout
    storage = Storage(db)
    assert [storage.device_keys(n)[0][1].hex() for n in ("shed", "barn", "loft")] == ["cd" * 32, env_key, "ab" * 32]
    storage.close()
    missing = mpseal_cli("devices", "add", "x", "--key-env", "MPSEAL_NOT_SET", "--db", db)
    assert missing.returncode == 1 and b"MPSEAL_NOT_SET is not set" in missing.stderr
    sealed = mpseal_cli("seal", "--key-file", str(key_file), "--device", "1", "--seq", "1", input=b"hi")
    assert sealed.returncode == 0
    assert mpseal_cli("unseal", "--key-file", str(key_file), input=sealed.stdout).stdout == b"hi"


def test_rotate_key_arguments_are_removed_once_the_device_uses_the_new_key(tmp_path):
    path = str(tmp_path / "db.sqlite")
    storage = Storage(path)
    device = storage.add_device("greenhouse")
    ingestor = Ingestor(storage)
    new_key = os.urandom(32)
    assert rotate(storage, "greenhouse", new_key) == (1, new_key)
    _, ack = ingestor.ingest([(mpseal.seal(device.master_key, device.id, 1, READING), "udp")])[0]
    commands = control.decode_ack(mpseal.unseal(ack, device.master_key, direction=mpseal.TO_DEVICE)[1])[1]
    assert commands == [control.rotate_key(1, new_key)]  # the new key went out inside the ack

    def arguments():
        db = sqlite3.connect(path)
        try:
            return [bytes(a) for (a,) in db.execute("SELECT argument FROM commands")]
        finally:
            db.close()

    assert new_key in arguments()[0], "kept until applied: a lost ack is answered with it again"
    outcome, _ = ingestor.ingest([(mpseal.seal(new_key, device.id, 2, READING, epoch=1), "udp")])[0]
    assert outcome.status == "stored"
    assert arguments() == [b""], "the device uses the new key: the command's copy of it is gone"
    storage.close()

"""`mpseal provision` and `mpseal rotate-key`, end to end: the real CLI writes
/config.json onto the virtual board (`mpseal vboard`, over its serial pty),
then the real firmware on the MicroPython unix port runs with what landed on
that flash, against a real `mpseal receive`. Plus the refusals."""
import json
import os
import socket
import stat
import subprocess

import pytest
import yaml

from conftest import BIN, wait_until
from mpseal_host.storage import Storage
from mpseal_tools.sim import unix_board
from mpseal_tools.receiver_proc import free_port
from mpseal_tools.provision import SECRETS_TEMPLATE, board_config
from mpseal_host.registry import rotate as rotate_key
from mpseal_tools.sim.vboard import read_flash_files

MPSEAL = os.path.join(BIN, "mpseal")
# The heap the other simulated boards get; rotation (a command) fits in it.
SIM_HEAP = unix_board.DEFAULT_HEAP
pytestmark = pytest.mark.slow


def run(*args, timeout=90):
    return subprocess.run([MPSEAL] + list(args), capture_output=True, timeout=timeout)


def device(db, name):
    storage = Storage(db)
    try:
        return storage.get_device(name), storage.device_keys(name), storage.readings(name, limit=10000)
    finally:
        storage.close()


@pytest.fixture
def receiver(tmp_path):
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    db = str(tmp_path / "mpseal.sqlite")
    Storage(db).close()  # schema in place before the first provisioning
    proc = subprocess.Popen([MPSEAL, "receive", "--db", db, "--udp", "127.0.0.1:%d" % udp,
                             "--http", "127.0.0.1:%d" % http, "--api", "off"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = proc.stdout.readline()
    assert b"listening" in line, line
    yield {"db": db, "udp": udp, "http": http}
    proc.terminate()
    proc.wait(timeout=20)


def write_secrets(tmp_path, receiver, interval=1):
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump({
        "wifi": {"ssid": "lab", "password": "wifi-secret"},
        "receiver": {"host": "127.0.0.1", "udp_port": receiver["udp"], "http_port": receiver["http"]},
        "config": {"interval_s": interval, "log": True, "sensors": [{"type": "synthetic"}], "transports": ["udp"]},
    }))
    path.chmod(0o600)
    return str(path)


def start_vboard(tmp_path, *extra):
    flash = str(tmp_path / "vboard")
    proc = subprocess.Popen([MPSEAL, "vboard", "--flash", flash] + list(extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    if not line.startswith("vboard: /dev/"):
        proc.kill()
        pytest.fail("mpseal vboard did not start: %r %r" % (line, proc.stderr.read()))
    return proc, {"port": line.split()[1], "flash": flash}


@pytest.fixture
def vboard(tmp_path):
    proc, info = start_vboard(tmp_path)
    yield info
    proc.terminate()
    proc.wait(timeout=20)


def test_provision_over_webrepl(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    proc, info = start_vboard(tmp_path, "--webrepl", "127.0.0.1:%d" % port, "--password", "pass123")
    try:
        proc.stdout.readline()  # the webrepl address line
        secrets = write_secrets(tmp_path, {"udp": 4740, "http": 8740})
        data = yaml.safe_load(open(secrets))
        data["webrepl"] = {"password": "pass123"}
        with open(secrets, "w") as f:
            yaml.safe_dump(data, f)
        db = str(tmp_path / "db.sqlite")
        result = run("provision", "cellar", "--host", "127.0.0.1:%d" % port, "--db", db, "--secrets", secrets)
        assert result.returncode == 0, result.stderr
        config = json.loads(read_flash_files(info["flash"])["/config.json"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    dev = device(db, "cellar")[0]
    assert config["key"] == dev.master_key.hex() and config["webrepl"] == {"password": "pass123"}


def run_firmware(tmp_path, files, name="sim"):
    """Real firmware, run with the config (and sequence file) found on a board's flash."""
    flash = tmp_path / name
    unix_board.install(flash, json.loads(files["/config.json"]))
    if "/seq.dat" in files:
        (flash / "seq.dat").write_bytes(files["/seq.dat"])
    board = unix_board.Board(flash, heapsize=SIM_HEAP)
    board.start()
    return board


def test_missing_secrets_file_is_created_private_and_refused(tmp_path):
    secrets = tmp_path / "secrets.yaml"
    result = run("provision", "greenhouse", "--port", "/dev/null", "--db", str(tmp_path / "db.sqlite"),
                 "--secrets", str(secrets))
    assert result.returncode == 1
    assert b"no secrets file" in result.stderr and b"fill in" in result.stderr
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert secrets.read_text() == SECRETS_TEMPLATE
    again = run("provision", "greenhouse", "--port", "/dev/null", "--db", str(tmp_path / "db.sqlite"),
                "--secrets", str(secrets))
    assert again.returncode == 1 and b"fill in wifi.ssid and receiver.host" in again.stderr
    assert not (tmp_path / "db.sqlite").exists() or Storage(str(tmp_path / "db.sqlite")).list_devices() == []


def test_existing_device_keeps_its_key_without_force(tmp_path):
    db = str(tmp_path / "db.sqlite")
    storage = Storage(db)
    original = storage.add_device("greenhouse").master_key
    storage.close()
    secrets = write_secrets(tmp_path, {"udp": 4740, "http": 8740})
    # /dev/null as the port: a refusal must happen before any board is touched.
    result = run("provision", "greenhouse", "--port", "/dev/null", "--db", db, "--secrets", secrets)
    assert result.returncode == 1
    assert b"already exists" in result.stderr and b"--force" in result.stderr and b"FORCE=1" in result.stderr
    assert device(db, "greenhouse")[0].master_key == original


def test_provision_onto_the_virtual_board_then_readings_reach_the_receiver(tmp_path, receiver, vboard):
    secrets = write_secrets(tmp_path, receiver)
    result = run("provision", "greenhouse", "--port", vboard["port"], "--db", receiver["db"], "--secrets", secrets)
    assert result.returncode == 0, result.stderr
    dev, keys, _ = device(receiver["db"], "greenhouse")
    assert dev is not None and len(keys) == 1 and len(dev.master_key) == 32
    out = result.stdout + result.stderr
    assert dev.master_key.hex().encode() not in out and b"--show-key" in out  # never printed unasked

    files = read_flash_files(vboard["flash"])  # read back from the littlefs image itself
    config = json.loads(files["/config.json"])
    assert config["device_id"] == dev.id and config["key"] == dev.master_key.hex() and config["epoch"] == 0
    assert config["wifi"] == {"ssid": "lab", "password": "wifi-secret"}
    assert config["receiver"] == {"host": "127.0.0.1", "udp_port": receiver["udp"], "http_port": receiver["http"]}

    board = run_firmware(tmp_path, files)
    try:
        wait_until(lambda: device(receiver["db"], "greenhouse")[0].stored >= 3, 60, "3 readings stored")
    finally:
        board.stop()
    dev, _, readings = device(receiver["db"], "greenhouse")
    assert dev.rejected == 0 and [r["seq"] for r in readings][:3] == [1, 2, 3]

    # Re-provisioning: refused without --force, then a new key, and the board's
    # counter continues above what the host has seen (no replay refusals).
    refused = run("provision", "greenhouse", "--port", vboard["port"], "--db", receiver["db"], "--secrets", secrets)
    assert refused.returncode == 1 and b"already exists" in refused.stderr
    forced = run("provision", "greenhouse", "--port", vboard["port"], "--db", receiver["db"], "--secrets", secrets,
                 "--force", "--show-key")
    assert forced.returncode == 0, forced.stderr
    new, keys, _ = device(receiver["db"], "greenhouse")
    assert new.master_key != dev.master_key and new.epoch == 1 and new.id == dev.id and len(keys) == 1
    assert ("key: %s" % new.master_key.hex()).encode() in forced.stdout  # asked for with --show-key
    files = read_flash_files(vboard["flash"])
    assert files["/seq.dat"] == b"%d %d\n" % (dev.last_seq + 1, dev.last_seq + 1)
    board = run_firmware(tmp_path, files, name="sim2")  # a fresh flash: only what provisioning wrote
    try:
        wait_until(lambda: device(receiver["db"], "greenhouse")[0].stored >= dev.stored + 2, 60, "2 more readings")
    finally:
        board.stop()
    after, _, _ = device(receiver["db"], "greenhouse")
    assert after.rejected == 0 and after.last_seq > dev.last_seq


def test_rotation_under_traffic_loses_and_rejects_nothing(tmp_path, receiver):
    storage = Storage(receiver["db"])
    dev = storage.add_device("greenhouse")
    storage.close()
    secrets = yaml.safe_load(open(write_secrets(tmp_path, receiver)))
    flash = tmp_path / "flash"
    unix_board.install(flash, board_config(dev.id, "greenhouse", dev.master_key, 0, secrets))
    board = unix_board.Board(flash, heapsize=SIM_HEAP)
    board.start()
    try:
        for rotation in (1, 2):  # twice: the second runs on a key that itself arrived by rotation
            wait_until(lambda: device(receiver["db"], "greenhouse")[0].stored >= 3 * rotation, 60, "readings")
            storage = Storage(receiver["db"])
            epoch, key = rotate_key(storage, "greenhouse")
            with pytest.raises(Exception, match="waiting for its first packet"):
                rotate_key(storage, "greenhouse")  # one rotation at a time
            storage.close()
            assert epoch == rotation
            wait_until(lambda: device(receiver["db"], "greenhouse")[0].epoch == epoch, 60, "epoch %d" % epoch)
            current, keys, _ = device(receiver["db"], "greenhouse")
            assert keys == [(epoch, key, "current")]  # the old key is retired
            assert json.loads((flash / "config.json").read_text())["epoch"] == epoch
            assert json.loads((flash / "config.json").read_text())["key"] == key.hex()
        stored_before = device(receiver["db"], "greenhouse")[0].stored
        wait_until(lambda: device(receiver["db"], "greenhouse")[0].stored >= stored_before + 2, 60, "more readings")
    finally:
        board.stop()
    dev, _, readings = device(receiver["db"], "greenhouse")
    seqs = [r["seq"] for r in readings]
    assert dev.rejected == 0 and dev.duplicates == 0
    assert seqs == list(range(1, len(seqs) + 1))  # none lost: every number from 1 on, in order
    sealed = board.stats["readings"]
    assert sealed - len(seqs) <= 1  # at most the one in flight when the board was stopped


def test_rotate_key_cli_refusals(tmp_path):
    result = run("rotate-key", "greenhouse", "--db", str(tmp_path / "absent.sqlite"))
    assert result.returncode == 1 and b"no receiver database" in result.stderr
    db = str(tmp_path / "db.sqlite")
    Storage(db).close()
    result = run("rotate-key", "greenhouse", "--db", db)
    assert result.returncode == 1 and b"no device named 'greenhouse'" in result.stderr


class FolderBoard:
    """A board's flash as a folder, its REPL the real MicroPython unix port
    running each exec() there (the script provisioning sends is the one a
    board runs)."""

    def __init__(self, flash):
        self.flash = flash

    def exec(self, code):
        launcher = "import os\nos.umount('/')\nos.mount(os.VfsPosix(%r), '/')\nos.chdir('/')\n" % str(self.flash)
        result = subprocess.run([unix_board.micropython_path(), "-c", launcher + code], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def put_file(self, path, data):
        (self.flash / path.lstrip("/")).write_bytes(data)


@pytest.mark.parametrize("new_device", [True, False])
def test_provisioning_clears_the_old_queue_and_a_new_device_the_command_record(tmp_path, new_device):
    from mpseal_tools.provision import clear_board_state

    flash = tmp_path / "flash"
    (flash / "queue").mkdir(parents=True)
    for name in ("00000010", "00000011", "00000012.tmp"):
        (flash / "queue" / name).write_bytes(b"sealed under the old key")
    (flash / "cmdseq.dat").write_text("77 77\n")
    (flash / "seq.dat").write_text("1201 1201\n")
    (flash / "seq.dat.tmp").write_text("12")
    clear_board_state(FolderBoard(flash), new_device=new_device)
    assert list((flash / "queue").iterdir()) == []  # never acceptable again: the host forgets the old key
    assert not (flash / "seq.dat.tmp").exists()
    if new_device:
        assert not (flash / "cmdseq.dat").exists()  # the old device's command record is not the new one's
        assert (flash / "seq.dat").read_text() == "1 1\n"  # written: a missing /seq.dat later means a lost one
    else:
        assert (flash / "cmdseq.dat").read_text() == "77 77\n"  # same device, same host->device counter
        assert (flash / "seq.dat").read_text() == "1201 1201\n"  # continue_sequence raises it if needed


def test_provision_with_sensors_then_configure_keeps_the_key(tmp_path, vboard):
    """The issue's sequence: `--sensor dht22:D2 --sensor battery` (boards.yaml
    pin names), then `mpseal configure` moves the board to another receiver
    address without a new key."""
    secrets = write_secrets(tmp_path, {"udp": 4740, "http": 8740})
    data = yaml.safe_load(open(secrets))
    del data["config"]["sensors"]
    with open(secrets, "w") as f:
        yaml.safe_dump(data, f)
    db = str(tmp_path / "db.sqlite")
    result = run("provision", "greenhouse", "--port", vboard["port"], "--board", "wemos", "--db", db,
                 "--secrets", secrets, "--sensor", "dht22:D2", "--sensor", "battery")
    assert result.returncode == 0, result.stderr
    before = json.loads(read_flash_files(vboard["flash"])["/config.json"])
    assert before["sensors"] == [{"type": "dht22", "pin": 4}, {"type": "battery"}]

    result = run("configure", "greenhouse", "--port", vboard["port"], "--secrets", secrets,
                 "--receiver-host", "192.168.7.2", "--udp-port", "5740")
    assert result.returncode == 0, result.stderr
    assert b"receiver.host '127.0.0.1' -> '192.168.7.2'" in result.stdout and b"key unchanged" in result.stdout
    after = json.loads(read_flash_files(vboard["flash"])["/config.json"])
    assert after["receiver"] == {"host": "192.168.7.2", "udp_port": 5740, "http_port": 8740}
    assert {k: v for k, v in after.items() if k != "receiver"} == {k: v for k, v in before.items() if k != "receiver"}
    assert device(db, "greenhouse")[0].master_key.hex() == after["key"]  # host and board still agree

    refused = run("configure", "cellar", "--port", vboard["port"], "--secrets", secrets)
    assert refused.returncode == 1 and b"provisioned as 'greenhouse', not 'cellar'" in refused.stderr

"""Helpers the SMS tests share: a simulated board wired to a simulated modem,
and a host database. The modems are simulated (mpseal_tools.sim.modem): a
GSM radio cannot exist here. Everything else is the real thing: the firmware
on the MicroPython unix port, the `mpseal` CLI, gammu-smsd."""
import json
import os
import subprocess

from conftest import BIN
from mpseal_host.storage import Storage
from mpseal_tools.sim import unix_board

MPSEAL = os.path.join(BIN, "mpseal")
BOARD_NUMBER = "+4915100000001"
HOST_NUMBER = "+4915100000002"
DEVICE_ID = 7
# An SMS board runs in the 48k target with its modules in ROMFS (the default
# board's way, unix_board.DEFAULT_ROM): from /lib it retains ~53 KB right after
# boot and cannot start in 48k (docs/firmware.md "Memory and size").
BOARD_HEAP = unix_board.TARGET_HEAP


def run_cli(*args, env=None, check=True):
    result = subprocess.run([MPSEAL] + list(args), capture_output=True, text=True, timeout=60, env=env)
    if check and result.returncode != 0:
        raise AssertionError("mpseal %s failed (%d): %s" % (" ".join(args), result.returncode, result.stderr))
    return result


def make_device(db, key, numbers=(BOARD_NUMBER,)):
    run_cli("devices", "add", "field", "--key", key.hex(), "--id", str(DEVICE_ID), "--db", str(db))
    if numbers:
        run_cli("sms-numbers", "field", *numbers, "--db", str(db))


def board_config(key, host_number, readings, interval_s=1, ack_timeout_s=20):
    return {
        "device_id": DEVICE_ID,
        "name": "field",
        "key": key.hex(),
        "epoch": 0,
        "receiver": {"host": "127.0.0.1"},
        "transports": ["sms"],
        "sensors": [{"type": "synthetic"}],
        "interval_s": interval_s,
        "power": "always-on",
        "max_readings": readings,
        "log": True,
        "sms": {"host_number": host_number, "uart": 0, "ack_timeout_s": ack_timeout_s},
    }


def start_board(tmp_path, config, modem_path, monkeypatch):
    flash = tmp_path / "flash"
    unix_board.install(flash, config)
    monkeypatch.setenv("MPSEAL_UART0", modem_path)  # hw_unix.modem_uart opens it
    return unix_board.Board(flash, heapsize=BOARD_HEAP, log_path=tmp_path / "board.log").start()


def board_config_on_flash(tmp_path):
    return json.loads((tmp_path / "flash" / "config.json").read_text())


def stored_seqs(db, device="field"):
    storage = Storage(str(db))
    try:
        return sorted(r["seq"] for r in storage.readings(device, limit=1000))
    finally:
        storage.close()


def stats(db):
    storage = Storage(str(db))
    try:
        return storage.stats()
    finally:
        storage.close()

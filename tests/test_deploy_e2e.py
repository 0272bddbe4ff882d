"""The whole path a maker takes, with the virtual board standing in for the
ESP8266: build -> provision (/config.json) -> deploy with mpremote -> soft
reset -> the firmware boots ON the virtual board and its sealed readings
reach a real `mpseal receive` on loopback."""
import subprocess

import pytest
import yaml

from conftest import wait_until
from mpseal_tools.receiver_proc import ReceiverProcess
from mpseal_tools.sim.vboard import read_flash_files
from vboard_helpers import MPSEAL, RunningVBoard

pytestmark = pytest.mark.slow


def run(*args, timeout=120):
    return subprocess.run([MPSEAL] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def receiver(tmp_path):
    proc = ReceiverProcess(tmp_path / "receiver").start()
    yield proc
    proc.stop()


def stored(receiver, name):
    try:
        dev = receiver.device(name)
    except KeyError:
        return 0, 0
    return dev["stored"], dev["rejected"]


def test_deployed_firmware_runs_on_the_virtual_board_and_readings_reach_the_receiver(tmp_path, receiver):
    out = str(tmp_path / "build")
    built = run("build", "--board", "wemos", "--simulator", "--out", out, "--no-progress")
    assert built.returncode == 0, built.stderr
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({
        "wifi": {"ssid": "lab", "password": "wifi-secret"},
        "receiver": {"host": "127.0.0.1", "udp_port": receiver.udp_port, "http_port": receiver.http_port},
        "config": {"interval_s": 1, "sensors": [{"type": "synthetic"}], "transports": ["udp"]},
    }))
    secrets.chmod(0o600)
    vb = RunningVBoard(tmp_path / "flash", fs_size="1m")
    try:
        provisioned = run("provision", "greenhouse", "--port", vb.port, "--db", str(receiver.db),
                          "--secrets", str(secrets))
        assert provisioned.returncode == 0, provisioned.stderr
        deployed = run("deploy", "--board", "wemos", "--port", vb.port, "--out", out, "--no-progress")
        assert deployed.returncode == 0, deployed.stderr
        assert "0 unchanged" in deployed.stderr
        assert "/config.json" in read_flash_files(vb.flash)  # the deploy left the board's data alone

        wait_until(lambda: stored(receiver, "greenhouse")[0] >= 3, 60, "3 readings from the virtual board")
        count, rejected = stored(receiver, "greenhouse")
        assert count >= 3, "the firmware on the virtual board delivered %d readings in 60 s" % count
        assert rejected == 0
    finally:
        vb.stop()

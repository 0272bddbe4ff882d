"""Memory: the real firmware (MicroPython unix port, a folder as flash) runs
readings in fast mode against a loopback acker under a small heap, and a
MemoryError anywhere (boot or a cycle; a cycle's error is caught, printed and
counted in `errors`) fails the test.

The issue's target is 48k (`unix_board.TARGET_HEAP`, also the DEFAULT_HEAP
every simulated board gets): readings and a command packet run there, and
`make bench` runs 10,000 readings there and prints the heap high-water
(docs/firmware.md "Memory and size").

Every supported configuration (bench.firmware.CONFIGS: each sensor
combination, and SMS) runs here with its modules in ROMFS, for a few hundred
readings each, to keep the suite fast: the 10,000-reading runs of each, both
ways (ROMFS and /lib), are `make bench`'s. A steady cycle retains nothing new
(the high-water after 300 readings is the one after 10,000: bench).

No check here depends on timing: a reading whose ack comes later than the
board's 2.1 s of retries (a loaded machine starves the acker thread) is in
the flash queue at the end, not lost, so "all acked" reads "acked + queued ==
readings" (`accounted_for`)."""
import subprocess

import pytest

from mpseal_tools.sim import unix_board
from mpseal_tools.bench.firmware import CONFIGS, Acker, run_board

READINGS = 500
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def acker():
    return Acker(KEY)


def accounted_for(stats, readings):
    """Every reading taken was acked or is still in the flash queue (its
    ack came after the last retry): none lost, none dropped or refused."""
    return (stats["readings"] == readings and stats["acked"] > 0 and stats["acked"] + stats["queue"] == readings
            and stats["dropped"] == stats["rejected"] == 0)


def run(heap, acker):
    code, stats, lines = run_board(heap, READINGS, acker, KEY)
    memory_errors = [line for line in lines if "MemoryError" in line]
    return code, stats, memory_errors, lines


def check(heap, acker):
    code, stats, memory_errors, lines = run(heap, acker)
    tail = "\n".join(lines[-15:])
    assert not memory_errors, "MemoryError under -X heapsize=%s:\n%s" % (heap, tail)
    assert code == 0 and stats, "board exit %s under %s:\n%s" % (code, heap, tail)
    assert accounted_for(stats, READINGS) and stats["errors"] == 0, stats
    # the figures the bench reports are there and plausible
    assert 0 < stats["heap_live"] <= stats["heap_high"] < 1024 * int(heap.rstrip("k")), stats
    return stats


def test_firmware_runs_in_48k(acker):
    check(unix_board.TARGET_HEAP, acker)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_configuration_runs_in_48k_from_romfs(config, acker):
    readings = 20 if "sms" in CONFIGS[config] else 300
    code, stats, lines = run_board(unix_board.TARGET_HEAP, readings, acker, KEY, progress=False, config=config, rom=True)
    tail = "\n".join(lines[-15:])
    assert not [line for line in lines if "MemoryError" in line], tail
    assert code == 0 and stats and accounted_for(stats, readings) and stats["errors"] == 0, tail
    assert stats["sensor_errors"] == 0 and 0 < stats["heap_high"] < 48 * 1024, stats


@pytest.mark.parametrize("config", ["synthetic", "battery"])
def test_boards_without_romfs_run_these_in_48k_from_lib(config, acker):
    """esp01 (1 MB, no ROMFS image): modules in /lib. What does not fit there
    yet is in make bench's output and docs/firmware.md."""
    code, stats, lines = run_board(unix_board.TARGET_HEAP, 300, acker, KEY, progress=False, config=config)
    assert code == 0 and accounted_for(stats, 300) and stats["errors"] == 0, "\n".join(lines[-15:])


def test_an_unknown_sensor_type_is_one_config_line_at_48k(tmp_path):
    flash = tmp_path / "flash"
    unix_board.install(flash, {"device_id": 1, "key": KEY.hex(), "receiver": {"host": "127.0.0.1"}, "sensors": [{"type": "dht23", "pin": 4}]}, rom=False)
    board = unix_board.Board(flash, heapsize=unix_board.TARGET_HEAP).start()
    assert board.wait(60) == 0
    assert board.lines == ["mpseal: /config.json: key 'sensors[0].type' must be a sensor type "
                           "(synthetic dht11 dht22 ds18b20 battery), got 'dht23'"], board.lines


def test_commands_are_handled_in_48k():
    """A command is the heap's worst moment (its code and names load while a
    cycle runs): set-interval (which writes /config.json back) and read-now on
    the ack of one reading, under the target heap."""
    from mpseal import control

    acker = Acker(KEY, commands={READINGS - 2: [control.set_interval(1), control.read_now()]})
    code, stats, lines = run_board(unix_board.TARGET_HEAP, READINGS, acker, KEY, progress=False)
    tail = "\n".join(lines[-15:])
    assert not [line for line in lines if "MemoryError" in line], tail
    assert code == 0 and stats["commands"] == 2 and stats["commands_refused"] == 0 and stats["errors"] == 0, tail
    assert accounted_for(stats, READINGS), stats


def test_the_simulated_board_runs_at_the_target_heap():
    # The e2e tests, the demo and the bench use DEFAULT_HEAP: with it at the
    # target, every configuration they run (commands, SMS, deep sleep) is
    # checked at 48k, not only the fast-mode loop above.
    assert unix_board.DEFAULT_HEAP == unix_board.TARGET_HEAP == "48k"


def test_a_too_small_heap_is_reported_not_hidden(acker):
    # The check above must be able to fail: 24k cannot even load the app.
    code, stats, memory_errors, lines = run("24k", acker)
    assert code != 0 and memory_errors, "\n".join(lines[-10:])


def test_boot_only_code_is_unloaded(tmp_path):
    """config checking, the transport loader and HKDF are gone once the app
    runs; command handling is not loaded until a command comes."""
    flash = tmp_path / "flash"
    unix_board.install(flash, {"device_id": 1, "key": KEY.hex(), "receiver": {"host": "127.0.0.1", "udp_port": 9}, "interval_s": 0}, rom=False)
    script = (
        unix_board.LAUNCHER.split("import boot")[0]
        + "import boot, app, sys\napp.start()\nprint('MODULES', ' '.join(sorted(sys.modules)))\n"
    ) % (str(flash), str(tmp_path / "sim"))
    (tmp_path / "sim").mkdir()
    out = subprocess.run([unix_board.micropython_path(), "-X", "heapsize=" + unix_board.DEFAULT_HEAP, "-c", script], capture_output=True, text=True, timeout=60)
    line = [x for x in out.stdout.splitlines() if x.startswith("MODULES ")]
    assert line, out.stdout + out.stderr
    loaded = set(line[0].split()[1:])
    assert {"app", "transport_udp", "mpseal.packet"} <= loaded, loaded
    assert not loaded & {"config", "transports", "mpseal.hkdf", "commands", "mpseal.control", "mpseal.payload", "rtc_memory", "sensor_dht", "sensor_battery", "sensor_ds18b20"}, loaded

"""The real firmware (MicroPython unix port, a folder as flash) against the
real receiver (`mpseal receive` on SQLite, loopback): power cuts, an offline
receiver, host commands, deep sleep. The only simulated parts are the ones
that cannot exist here: the radio (loopback sockets), the flash chip (a
folder) and the power switch (SIGKILL)."""
import json
import os
import random
import socket
import threading

import pytest

from mpseal_tools.sim import unix_board
from mpseal_tools.receiver_proc import ReceiverProcess

pytestmark = pytest.mark.slow
DEVICE = "dev"
DEVICE_ID = 5
POWER_CUTS = 30


class Rig:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.key = os.urandom(32)
        self.receiver = ReceiverProcess(tmp_path / "rx")
        self.receiver.add_device(DEVICE, self.key, DEVICE_ID)
        self.receiver.start()
        self.boards = []

    def board(self, **changes):
        config = {
            "device_id": DEVICE_ID,
            "key": self.key.hex(),
            "receiver": {"host": "127.0.0.1", "udp_port": self.receiver.udp_port, "http_port": self.receiver.http_port},
            "transports": ["udp"],
            "sensors": [{"type": "synthetic"}],
            "interval_s": 0,
            "log": True,
        }
        config.update(changes)
        flash = self.tmp / ("flash%d" % len(self.boards))
        unix_board.install(flash, config)
        board = unix_board.Board(flash, log_path=self.tmp / ("board%d.log" % len(self.boards)))
        self.boards.append(board)
        return board

    def stored_seqs(self):
        return [r["seq"] for r in self.receiver.readings(DEVICE)]

    def close(self):
        for board in self.boards:
            board.stop()
        self.receiver.stop()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def numbers(board, word):
    """Sequence numbers from the board's `<word> N ...` console lines."""
    return [int(line.split()[1]) for line in list(board.lines) if line.startswith(word + " ")]


def test_power_cuts_never_reuse_a_sequence_number(rig):
    board = rig.board().start()
    rnd = random.Random(1234)  # random cut points, the same ones every run
    for cut in range(POWER_CUTS):
        board.wait_for(lambda b: len(numbers(b, "sealed")) > cut, timeout=30)
        board.power_cut()  # SIGKILL at a random moment of boot, sealing, sending or writing flash
        board.wait_for(lambda b: b.process is not None, timeout=5)
        import time

        time.sleep(rnd.uniform(0.0, 0.3))
    before = len(numbers(board, "acked"))
    board.wait_for(lambda b: len(numbers(b, "acked")) >= before + 5, timeout=30)
    board.stop()

    sealed = numbers(board, "sealed")
    stored = rig.stored_seqs()
    device = rig.receiver.device(DEVICE)
    assert sealed == sorted(set(sealed)), "a sequence number was sealed twice or went backwards"
    assert len(stored) == len(set(stored)) and device["stored"] == len(stored)
    assert set(stored) <= set(sealed)
    assert device["rejected"] == 0, device["rejected_by_reason"]  # no replay, too_old or seq_reused
    # A cut can only lose the one reading sealed but not yet sent or queued.
    assert len(set(sealed) - set(stored)) <= POWER_CUTS
    assert max(stored) > 64  # the reservation jumps happened and were accepted


def test_readings_taken_while_the_receiver_is_down_arrive_exactly_once(rig):
    board = rig.board(transports=["udp", "http"]).start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 3, timeout=30)
    rig.receiver.stop()
    board.wait_for(lambda b: len(numbers(b, "queued")) >= 3, timeout=60)
    rig.receiver.start()
    queued = numbers(board, "queued")
    board.wait_for(lambda b: max(numbers(b, "acked")) > max(queued) + 3, timeout=60)
    board.stop()

    sealed = numbers(board, "sealed")
    acked = set(numbers(board, "acked"))
    stored = rig.stored_seqs()
    assert set(queued) <= acked, "queued readings were not delivered after the receiver came back"
    assert len(stored) == len(set(stored)), "a reading was stored twice"
    taken = [s for s in sealed if s <= max(acked)]
    assert set(taken) <= set(stored), "readings taken while offline are missing: %s" % sorted(set(taken) - set(stored))
    assert rig.receiver.device(DEVICE)["rejected"] == 0
    # Why the readings stayed queued: a line when the link's state changes,
    # not one per cycle (several cycles failed; the last transport tried,
    # HTTP, found nobody listening).
    link = [line for line in board.lines if line.startswith("mpseal link: ")]
    assert link[0].startswith("mpseal link: readings stay queued: no route to 127.0.0.1:%d" % rig.receiver.http_port), link
    assert link[-1] == "mpseal link: up again, readings are delivered" and len(link) <= 4 < len(queued) + 2, link


def test_a_refusal_that_keeps_readings_queued_is_said_once(rig):
    # device 99 is not registered: the receiver refuses with unknown_device,
    # a reason that can change (register the device), so readings stay queued.
    board = rig.board(device_id=99, transports=["http"]).start()
    board.wait_for(lambda b: len(numbers(b, "queued")) >= 4, timeout=60)
    board.stop()
    link = [line for line in board.lines if line.startswith("mpseal link: ")]
    assert link == ["mpseal link: readings stay queued: refused by the receiver: unknown_device"], link


class AckDropper:
    """A UDP relay between board and receiver that loses every 3rd ack: the
    host has stored the reading, the board never hears so."""

    def __init__(self, receiver_port):
        self.target = ("127.0.0.1", receiver_port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.dropped = 0
        self.running = True
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self):
        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        back.settimeout(2)
        n = 0
        while self.running:
            self.front.settimeout(0.5)
            try:
                packet, board = self.front.recvfrom(1024)
                back.sendto(packet, self.target)
                ack = back.recv(1024)
            except OSError:
                continue
            n += 1
            if n % 3 == 0:
                self.dropped += 1
            else:
                self.front.sendto(ack, board)


def test_a_reading_whose_ack_was_lost_is_stored_once(rig):
    relay = AckDropper(rig.receiver.udp_port)
    board = rig.board(receiver={"host": "127.0.0.1", "udp_port": relay.port}).start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 30, timeout=60)
    board.stop()
    relay.running = False
    acked = numbers(board, "acked")
    stored = rig.stored_seqs()
    device = rig.receiver.device(DEVICE)
    assert relay.dropped >= 5  # each one made the board resend (UDP retry, or later from the queue)
    assert set(acked) <= set(stored) and len(stored) == len(set(stored))
    assert device["duplicates"] >= 5 and device["rejected"] == 0  # the resends: same packet, stored once


def test_commands_from_the_host_are_obeyed(rig):
    board = rig.board(interval_s=1).start()
    board.wait_for(lambda b: numbers(b, "acked"), timeout=30)
    rig.receiver.cli("command", DEVICE, "set-interval", "2")
    rig.receiver.cli("command", DEVICE, "read-now")
    board.wait_for(lambda b: "command read-now" in b.lines, timeout=30)
    assert "command set-interval" in board.lines
    assert unix_board.read_config(board.flash)["interval_s"] == 2

    rig.receiver.cli("command", DEVICE, "reboot")
    board.wait_for(lambda b: b.restarts >= 1, timeout=30)
    assert board.exit_codes[0] == unix_board.EXIT_RESET
    before = max(numbers(board, "acked"))
    board.wait_for(lambda b: max(numbers(b, "acked")) > before, timeout=30)  # back up and reporting
    assert board.stats["commands_refused"] == 0
    assert rig.receiver.device(DEVICE)["rejected"] == 0


def test_interval_mode_deep_sleeps_without_a_flash_write_per_wake(rig):
    board = rig.board(power="interval", interval_s=1).start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 4, timeout=60)
    board.stop()
    assert set(board.exit_codes[:3]) == {unix_board.EXIT_DEEPSLEEP}
    sealed = numbers(board, "sealed")
    assert sealed[:4] == [1, 2, 3, 4]  # RTC memory carries the next number over each sleep
    assert (board.flash / "seq.dat").read_text() == "65 65\n"  # one reservation, not one write per wake
    wakes = [json.loads(line[6:]) for line in board.lines if line.startswith("STATS ")]
    assert [s["readings"] for s in wakes[:4]] == [1, 2, 3, 4]  # counters survive deep sleep too


def test_real_sensors_send_real_readings_and_synthetic_ones_are_marked(rig):
    """The simulated DHT22 and ADC stand in for the chips (hardware): the
    readings the receiver stores carry their channels, and only the
    synthetic sensor's carry the `synthetic` marker (docs/protocol.md)."""
    board = rig.board(sensors=[{"type": "dht22", "pin": 4}, {"type": "battery"}], max_readings=3).start()
    board.wait(60)
    values = [r["value"] for r in rig.receiver.readings(DEVICE)]
    assert len(values) == 3 and all(set(v) == {"temperature", "humidity", "battery"} for v in values), values
    assert all(19.0 <= v["temperature"] <= 24.0 and 2.0 < v["battery"] < 4.5 for v in values), values
    board = rig.board(max_readings=5)  # synthetic, on a fresh flash continuing the device's numbers
    (board.flash / "seq.dat").write_text("100 100\n")  # as provisioning writes it (docs/provisioning.md)
    board.start().wait(60)
    marked = [r["value"] for r in rig.receiver.readings(DEVICE)][3:]
    assert marked and all(v.get("synthetic") == 1 and "battery" not in v for v in marked), marked

"""Issue 12, as an attacker on the link would try it: the real firmware
(MicroPython unix port, 48k heap, a folder as flash) against a real `mpseal
receive`, with a UDP relay in between that plays the attacker (replays,
junk). Only the radio (loopback sockets) and the flash chip (a folder) are
stand-ins."""
import json
import os
import socket
import threading
import time

import pytest

import mpseal
from mpseal import control
from mpseal_host.pipeline import ReAckLimiter
from mpseal_host.storage import Storage
from mpseal_tools.sim import unix_board as board_sim
from mpseal_host.registry import rotate as rotate_key

from conftest import wait_until
from test_firmware_e2e import DEVICE, DEVICE_ID, Rig, numbers

pytestmark = pytest.mark.slow
REPLAYS = 10000


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


class Relay:
    """Board <-> receiver over UDP, through the attacker. `before_ack(ack)`
    returns datagrams to send to the board ahead of each real ack (from the
    relay's own address, so they pass the board's source check). The first
    ack carrying commands is kept in `captured` (with the reading it
    answered in `captured_reading`)."""

    def __init__(self, receiver_port, key, before_ack=None):
        self.target = ("127.0.0.1", receiver_port)
        self.keys = mpseal.DeviceKeys(key)
        self.before_ack = before_ack or (lambda ack: ())
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.front.settimeout(0.5)
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.settimeout(2)
        self.board = None
        self.captured = self.captured_reading = self.last_reading = None
        self.acks = 0
        self.running = True
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self):
        while self.running:
            try:
                packet, self.board = self.front.recvfrom(1024)
                self.back.sendto(packet, self.target)
                ack = self.back.recv(1024)
            except OSError:
                continue
            self.acks += 1
            self.last_reading = packet
            if self.captured is None and ack[1] == mpseal.TYPE_ACK:
                _, body = mpseal.unseal(ack, self.keys, direction=mpseal.TO_DEVICE)
                if control.decode_ack(body)[1]:
                    self.captured, self.captured_reading = ack, packet
            for extra in self.before_ack(ack):
                self.front.sendto(extra, self.board)
            self.front.sendto(ack, self.board)

    def blast(self, datagram, times):
        """Sends `datagram` to the board `times` times, as fast as it goes."""
        for _ in range(times):
            self.front.sendto(datagram, self.board)

    def close(self):
        self.running = False


def relayed(rig, **changes):
    relay = Relay(rig.receiver.udp_port, rig.key, changes.pop("before_ack", None))
    board = rig.board(receiver={"host": "127.0.0.1", "udp_port": relay.port}, **changes)
    return relay, board


def test_a_captured_ack_replayed_runs_each_command_once(rig):
    relay, board = relayed(rig, interval_s=1, before_ack=lambda ack: [relay.captured] * 3 if relay.captured else ())
    board.start()
    board.wait_for(lambda b: numbers(b, "acked"), timeout=30)
    for command in (("set-interval", "2"), ("read-now",), ("reboot",)):
        rig.receiver.cli("command", DEVICE, *command)
    board.wait_for(lambda b: b.restarts >= 1 and relay.captured, timeout=30)
    relay.blast(relay.captured, REPLAYS)  # and 3 copies ahead of every real ack from now on
    before = max(numbers(board, "acked"))
    board.wait_for(lambda b: len([s for s in numbers(b, "acked") if s > before]) >= 5, timeout=60)
    board.stop()
    relay.close()
    for name in ("set-interval", "read-now", "reboot"):
        assert board.lines.count("command " + name) == 1, name
    assert board.restarts == 1 and board.exit_codes[0] == board_sim.EXIT_RESET
    assert board_sim.read_config(board.flash)["interval_s"] == 2
    assert board.stats["stale_acks"] + board.stats["replayed"] >= 10  # seen, counted, never run
    assert not [line for line in board.lines if "MemoryError" in line or "Traceback" in line]
    assert rig.receiver.device(DEVICE)["rejected"] == 0


def test_a_reading_replayed_to_the_host_burns_no_host_seq_and_costs_no_other_device_an_ack(rig, tmp_path):
    relay, board = relayed(rig, interval_s=1)
    board.start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=30)
    board.stop()
    reading = relay.last_reading
    # A second device keeps reporting through the flood.
    other_key = os.urandom(32)
    rig.receiver.add_device("other", other_key, DEVICE_ID + 1)
    other_flash = tmp_path / "other"
    board_sim.install(other_flash, {
        "device_id": DEVICE_ID + 1, "key": other_key.hex(), "transports": ["udp"], "interval_s": 0, "log": True,
        "receiver": {"host": "127.0.0.1", "udp_port": rig.receiver.udp_port}, "sensors": [{"type": "synthetic"}]})
    other = board_sim.Board(other_flash).start()
    rig.boards.append(other)
    other.wait_for(lambda b: numbers(b, "acked"), timeout=30)
    host_seq = rig.receiver.device(DEVICE)["host_seq"]
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    start = time.monotonic()
    for i in range(REPLAYS):
        attacker.sendto(reading, ("127.0.0.1", rig.receiver.udp_port))
        if i % 500 == 0:
            time.sleep(0.01)  # stay inside the receiver's socket buffer: every copy must reach the pipeline
    wait_until(lambda: rig.receiver.device(DEVICE)["duplicates"] >= REPLAYS, 60, "all replays processed")
    elapsed = time.monotonic() - start
    attacker.settimeout(0.5)
    answered = 0
    try:
        while True:
            attacker.recv(1024)
            answered += 1
    except socket.timeout:
        pass
    sealed_before_stop = len(numbers(other, "sealed"))
    other.stop()
    device = rig.receiver.device(DEVICE)
    assert device["host_seq"] == host_seq, "duplicates consumed host sequence numbers"
    # The attacker's address never delivered a reading: NEW_BURST + NEW_RATE per second.
    assert answered <= ReAckLimiter.NEW_BURST + ReAckLimiter.NEW_RATE * elapsed + 1
    assert other.stats["queued"] == 0 and other.stats["acked"] >= sealed_before_stop - 1, other.stats
    stats = json.loads(rig.receiver.cli("stats", "--json"))
    assert stats["events_by_device"][DEVICE]["reack_limited"] >= REPLAYS - answered


def test_junk_before_every_ack_loses_no_reading(rig):
    forged = mpseal.seal(os.urandom(32), DEVICE_ID, 1, control.encode_ack(1), type=mpseal.TYPE_ACK)
    relay, board = relayed(rig, before_ack=lambda ack: [os.urandom(len(ack)), forged, ack[:20]])
    board.start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 20, timeout=60)
    board.stop()
    relay.close()
    sealed, acked = numbers(board, "sealed"), numbers(board, "acked")
    stored = rig.stored_seqs()
    assert acked == sealed[: len(acked)] and not numbers(board, "queued"), "a junk datagram cost an ack"
    assert len(stored) == len(set(stored)) and set(acked) <= set(stored)
    assert board.stats["bad_replies"] >= 3 * len(acked) - 3


@pytest.mark.parametrize("damage", ["missing", "torn"])
def test_a_lost_seq_store_on_a_long_lived_board_resyncs_without_reusing_a_number(rig, damage):
    board = rig.board(interval_s=0)
    (board.flash / "seq.dat").write_text("1201 1201\n")  # a board that has been at it for a while
    board.start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 5, timeout=30)
    board.stop()
    before = rig.stored_seqs()
    assert min(before) == 1201 and max(before) > 1000
    if damage == "missing":
        (board.flash / "seq.dat").unlink()
    else:
        (board.flash / "seq.dat").write_bytes(b"12")  # a prefix: a torn write
    board.lines.clear()
    board.start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 5, timeout=30)
    board.stop()
    after = rig.stored_seqs()
    resumed = numbers(board, "resynced")
    assert resumed and resumed[0] == max(before) + 1, board.lines[:10]
    assert numbers(board, "sealed")[0] == max(before) + 1  # the very next number: none reused, none skipped
    assert after[: len(before)] == before and len(after) == len(set(after))
    device = rig.receiver.device(DEVICE)
    assert device["rejected"] == 0, device["rejected_by_reason"]  # no seq_reused, replay or too_old
    assert board.stats["unsequenced"] == 0  # the host answered at once: no reading went without a number


def test_a_fresh_board_whose_first_reservation_fails_is_not_bricked(rig):
    board = rig.board(interval_s=0)
    (board.flash / "seq.dat").unlink()  # never provisioned: asks the host at first boot
    (board.flash / "seq.dat.tmp").mkdir()  # and the reservation write fails (as on a full flash)
    board.start()
    board.wait_for(lambda b: any("cannot write /seq.dat" in line for line in b.lines), timeout=30)
    (board.flash / "seq.dat.tmp").rmdir()  # space freed
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 3, timeout=30)
    board.stop()
    assert numbers(board, "sealed")[:3] == [1, 2, 3]
    assert sum("cannot write" in line for line in board.lines) == 1  # one status line, not one per cycle
    assert not [line for line in board.lines if "Traceback" in line]
    assert rig.receiver.device(DEVICE)["rejected"] == 0


def test_the_last_sequence_number_stops_sealing_with_one_line(rig):
    board = rig.board(interval_s=0)
    (board.flash / "seq.dat").write_text("4294967293 4294967293\n")
    board.start()
    board.wait_for(lambda b: any("sequence numbers used up" in line for line in b.lines), timeout=30)
    board.wait_for(lambda b: b.stats and b.stats.get("unsequenced", 0) >= 50, timeout=30)
    board.stop()
    assert numbers(board, "sealed") == [4294967293, 4294967294, 4294967295]
    assert sum("used up" in line for line in board.lines) == 1
    assert not [line for line in board.lines if "Traceback" in line]
    stats = json.loads(rig.receiver.cli("stats", "--json"))
    assert "used up" in stats["counter_warnings"][DEVICE]
    assert stats["events_by_device"][DEVICE]["resync:seq_exhausted"] == 1


def test_rotate_key_then_every_command_kind_at_48k(rig):
    board = rig.board(interval_s=1)
    assert board.heapsize == board_sim.TARGET_HEAP == "48k"
    board.start()
    board.wait_for(lambda b: numbers(b, "acked"), timeout=30)
    storage = Storage(str(rig.receiver.db))
    try:
        epoch, key = rotate_key(storage, DEVICE)
    finally:
        storage.close()
    wait_until(lambda: rig.receiver.device(DEVICE)["epoch"] == epoch, 60, "first packet under the new key")
    for command in (("set-interval", "2"), ("read-now",), ("reboot",)):
        rig.receiver.cli("command", DEVICE, *command)
    board.wait_for(lambda b: b.restarts >= 1, timeout=30)
    before = max(numbers(board, "acked"))
    board.wait_for(lambda b: max(numbers(b, "acked")) > before, timeout=30)
    board.stop()
    config = board_sim.read_config(board.flash)
    assert (config["epoch"], config["key"], config["interval_s"]) == (epoch, key.hex(), 2)
    for name in ("rotate-key", "set-interval", "read-now", "reboot"):
        assert board.lines.count("command " + name) == 1, name
    assert not [line for line in board.lines if "MemoryError" in line or "Traceback" in line]
    assert rig.receiver.device(DEVICE)["rejected"] == 0

"""Groups, pins and staged rollouts (docs/ota.md "Rollouts"): the I/O-free
step, the plan in both storage backends, and a rollout to 10 simulated
boards (the real firmware on the unix port, 10 processes) that pauses at
its failure threshold."""
import json
import threading

import pytest

from mpseal_host.ota import CURRENT, DONE, FAILED, OFFERED, ON_TRIAL, PAUSED, QUEUED, RUNNING, assigned_versions, rollout_step
from mpseal_host.storage import open_storage
from mpseal_tools.sim.ota_rig import OtaRig, numbers


def st(running, state=CURRENT, offered=None, on_trial=False):
    return {"running": running, "state": state, "offered": offered, "on_trial": on_trial}


ROLLOUT = {"version": 2, "wave": 2, "max_failures": 2, "state": RUNNING, "offered": [], "failed": []}
MEMBERS = ["a", "b", "c", "d", "e"]


def test_a_rollout_offers_in_waves_and_finishes():
    statuses = {d: st(1) for d in MEMBERS}
    offer, r = rollout_step(ROLLOUT, MEMBERS, statuses)
    assert offer == ["a", "b"] and r["offered"] == ["a", "b"] and r["state"] == RUNNING
    statuses["a"] = st(1, QUEUED, 2)
    statuses["b"] = st(2, ON_TRIAL, 2, on_trial=True)
    assert rollout_step(r, MEMBERS, statuses)[0] == []  # the wave is still in flight
    statuses["a"] = st(2, CURRENT, 2)
    offer, r = rollout_step(r, MEMBERS, statuses)
    assert offer == ["c"]
    for d in "abc":
        statuses[d] = st(2, CURRENT, 2)
    offer, r = rollout_step(r, MEMBERS, statuses)
    assert offer == ["d", "e"]
    statuses["d"] = statuses["e"] = st(2, CURRENT, 2)
    offer, r = rollout_step(r, MEMBERS, statuses)
    assert offer == [] and r["state"] == DONE and r["why"] == "5 done, 0 failed"


def test_a_rollout_pauses_at_the_failure_threshold_and_offers_no_more():
    statuses = {d: st(1) for d in MEMBERS}
    _, r = rollout_step(ROLLOUT, MEMBERS, statuses)
    statuses["a"] = st(1, FAILED, 2)
    offer, r = rollout_step(r, MEMBERS, statuses)
    assert offer == ["c"] and r["failed"] == ["a"]  # one failure: below the threshold, the wave refills
    statuses["c"] = st(1, FAILED, 2)
    offer, r = rollout_step(r, MEMBERS, statuses)
    assert offer == [] and r["state"] == PAUSED and r["failed"] == ["a", "c"] and "threshold 2" in r["why"]
    assert rollout_step(r, MEMBERS, statuses)[0] == []


def test_pinned_devices_and_done_ones_are_passed_by():
    statuses = {d: st(1) for d in MEMBERS}
    statuses["b"] = st(2)  # already runs it
    offer, _ = rollout_step(dict(ROLLOUT, wave=5), MEMBERS, statuses, pinned={"a"})
    assert offer == ["c", "d", "e"]
    plan = {"groups": {"g": MEMBERS}, "rollouts": {"g": {"version": 2}}, "pins": {"a": {"version": 1}}}
    assert assigned_versions(plan) == {"a": 1, "b": 2, "c": 2, "d": 2, "e": 2}
    assert OFFERED  # (the states the step reads are update_status's: tests/test_ota_status.py)


def test_the_plan_is_kept_in_both_backends_and_changed_without_lost_updates(db_location):
    storage = open_storage(db_location)
    try:
        assert storage.ota_plan() == {}
        storage.change_ota_plan(lambda p: dict(p, groups={"g": ["a"]}))
        assert storage.ota_plan() == {"groups": {"g": ["a"]}}

        def add(n):
            other = open_storage(db_location)
            try:
                for i in range(10):
                    other.change_ota_plan(lambda p: dict(p, n=p.get("n", 0) + 1))
            finally:
                other.close()

        threads = [threading.Thread(target=add, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert storage.ota_plan()["n"] == 30
    finally:
        storage.close()


BOARDS = 10


def broken_at_import(src):
    path = src / "firmware" / "app.py"
    path.write_text('raise ImportError("release 2 cannot start")\n' + path.read_text())


@pytest.mark.slow
def test_a_staged_rollout_to_10_boards_pauses_at_its_threshold(tmp_path):
    """10 boards (10 unix-port processes, 1 reading/s each) in group
    "fleet"; dev9 pinned to v1. Release 2 crashes at import, so each board
    offered it rolls back: with waves of 3 and 2 failures allowed, the
    rollout pauses once 2 failed: after its first wave, or one device later
    (a failure below the threshold refills the wave), and the other boards
    are never offered it."""
    rig = OtaRig(tmp_path)
    try:
        rig.release(1)
        rig.release(2, "broken", broken_at_import)
        names = ["dev%d" % i for i in range(BOARDS)]
        for name in names:
            rig.add_device(name)
        rig.start()
        boards = [rig.board(device=name, interval_s=1).start() for name in names]
        for board in boards:
            board.wait_for(lambda b: len(numbers(b, "acked")) >= 1, timeout=60)
        cli = rig.receiver.cli
        url, releases = rig.receiver.ingest_url, str(rig.releases)
        cli("ota", "group", "fleet", *names)
        cli("ota", "assign", "--device", "dev9", "--version", "1", "--releases", releases, "--url", url)
        out = cli("ota", "assign", "--group", "fleet", "--version", "2", "--wave", "3", "--max-failures", "2",
                  "--releases", releases, "--url", url)
        assert "offered now: dev0 dev1 dev2" in out, out

        def plan():
            from mpseal_host.storage import Storage

            storage = Storage(str(rig.receiver.db))
            try:
                return storage.ota_plan()
            finally:
                storage.close()

        lines = []
        boards[0].wait_for(lambda b: lines.append(cli("ota", "rollout")) or plan()["rollouts"]["fleet"]["state"] == PAUSED,
                           timeout=240)
        rollout = plan()["rollouts"]["fleet"]
        n = len(rollout["offered"])
        assert n in (3, 4) and rollout["offered"] == names[:n] and len(rollout["failed"]) >= 2, rollout
        assert "paused" in lines[-1] and "threshold 2" in lines[-1]
        assert cli("ota", "rollout") == ""  # paused: a step offers nothing
        for board in boards[:n]:
            board.wait_for(lambda b: any(l.startswith("ota: v2 not confirmed after") for l in b.lines), timeout=120)
        devices = {d["name"]: d["ota"] for d in rig.receiver.api("/api/devices")["devices"] if d["name"] in names}
        for name in names[:n]:
            assert devices[name]["offered"] == 2 and devices[name]["assigned"] == 2
        for name in names[n:9]:  # never offered: still v1, assigned 2
            assert devices[name] == dict(running=1, on_trial=False, offered=None, offered_at=None, state=CURRENT,
                                         assigned=2), (name, devices[name])
        assert devices["dev9"]["assigned"] == 1 and devices["dev9"]["offered"] is None
        listed = cli("devices", "list")
        assert sum(1 for line in listed.splitlines() if line.endswith("1/- current (assigned 2)")) == 9 - n, listed
        for board in boards:
            board.stop()
        for board in boards[n:]:
            assert not any(l.startswith("ota: fetching") for l in board.lines)
        assert json.dumps(rig.receiver.device("dev0")["rejected"]) == "0"
    finally:
        rig.close()

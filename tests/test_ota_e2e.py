"""Signed OTA updates end to end: the real firmware on the unix port (a
folder as flash; power cuts are SIGKILL), the real `mpseal receive` serving
the release files over HTTP with Range, releases signed by `mpseal release`."""
import random
import signal

import pytest

from mpseal_tools.sim.ota_rig import (TRIAL_BOOTS, OtaRig, lib_is_complete, lib_units, never_sends, numbers, read_counts,
                                      read_state)

pytestmark = pytest.mark.slow


def mark_release(number):
    def change(src):
        with open(src / "firmware" / "app.py", "a") as f:
            f.write('\nprint("app release %d")\n' % number)
    return change


@pytest.fixture
def rig(tmp_path):
    r = OtaRig(tmp_path)
    r.release(1)
    yield r
    r.close()


def test_update_1_to_2_is_fetched_checked_and_confirmed(rig):
    rig.release(2, "v2", mark_release(2))
    rig.start()
    board = rig.board().start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=30)
    rig.offer(2)
    board.wait_for(lambda b: "ota: v2 confirmed" in b.lines, timeout=60)  # by the trial boot (ota_trial_check.py)
    assert "app release 2" in board.lines and "ota: v2 on trial, boot 1 of %d" % TRIAL_BOOTS in board.lines
    board.power_cut()  # the next boot records the confirmation (ota_versions.boot)
    board.wait_for(lambda b: b.lines.count("ota: v2 confirmed") >= 2, timeout=30)
    after = len(board.lines)
    board.wait_for(lambda b: any(l.startswith("acked ") for l in b.lines[after:]), timeout=30)
    board.stop()
    assert not any(l.startswith("ota: v2 on trial, boot 2") for l in board.lines)
    assert read_state(board.flash) == ["0", "2", "0", "0", "0", "2"]
    assert read_counts(board.flash) == {"staged": 1, "confirmed_trials": 1}
    # The fleet view (sealed app_release / app_on_trial values): trial readings, then confirmed ones
    values = [r["value"] for r in sorted(rig.receiver.readings("dev"), key=lambda r: r["seq"])]
    assert values[0]["app_release"] == 1 and "app_on_trial" not in values[0]
    assert any(v["app_release"] == 2 and v.get("app_on_trial") == 1 for v in values)
    assert values[-1]["app_release"] == 2 and "app_on_trial" not in values[-1]
    assert rig.receiver.device("dev")["ota"] == dict(running=2, on_trial=False, offered=2, state="current", assigned=None,
                                                     offered_at=rig.receiver.device("dev")["ota"]["offered_at"])
    listed = rig.receiver.cli("devices", "list")
    assert listed.splitlines()[1].endswith("  2/2 current"), listed
    assert lib_is_complete(board.flash, rig.releases)
    sealed = numbers(board, "sealed")
    assert sealed == sorted(set(sealed)), "a sequence number was reused across the update"
    assert rig.receiver.device("dev")["rejected"] == 0


def refused(board, version, reason):
    return "ota: refused v%d: %s" % (version, reason) in board.lines


def test_bad_releases_are_refused_with_a_reason_and_version_1_keeps_running(rig, tmp_path):
    from mpseal_tools.release import make_release, new_key, sign, load_key

    build_dir, manifest = rig.build("v1")
    # 2: a file changed on the server after signing
    two = rig.release(2)
    tampered = bytearray((two / "files" / "lib" / "app.mpy").read_bytes())
    tampered[len(tampered) // 2] ^= 1  # (bytes appended would never be read: the board takes the signed size)
    (two / "files" / "lib" / "app.mpy").write_bytes(bytes(tampered))
    # 3: a signature that is valid, but for other bytes
    three = rig.release(3)
    (three / "release.sig").write_bytes(sign(load_key(str(rig.key_file)), b"other bytes"))
    # 4: signed by a key the board does not list
    other_key = tmp_path / "other.pem"
    new_key(str(other_key))
    make_release(build_dir, manifest, 4, "1.4.0", str(rig.releases), str(other_key))
    # 5: built and signed for another board
    rig.release(5, board="nodemcu")
    # 6: release.txt replaced on the server after the offer named its hash
    six = rig.release(6)
    rig.start()
    board = rig.board().start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=30)
    steps = [(2, "wemos", "bad_hash"), (3, "wemos", "bad_signature"), (4, "wemos", "unknown_key"),
             (5, "nodemcu", "wrong_board"), (6, "wemos", "manifest_mismatch"), (1, "wemos", "downgrade")]
    for version, target, reason in steps:
        if version == 6:  # the offer names the signed release.txt; the server then has another
            command = rig.offer_command(6)
            text = (six / "release.txt").read_text()
            (six / "release.txt").write_text(text.replace("name 1.6.0", "name 1.6.1"))
            rig.queue(command)
        else:
            rig.offer(version, board=target)
        board.wait_for(lambda b: refused(b, version, reason), timeout=60)
        after = len(board.lines)
        board.wait_for(lambda b: any(line.startswith("acked ") for line in b.lines[after:]), timeout=30)
    board.stop()
    assert read_state(board.flash) == ["0", "1", "0", "0", "0", "1"]
    assert lib_is_complete(board.flash, rig.releases)
    assert read_counts(board.flash) == {reason: 1 for _, _, reason in steps}
    assert "app release" not in "\n".join(board.lines)
    sealed = numbers(board, "sealed")
    assert sealed == sorted(set(sealed))
    assert rig.receiver.device("dev")["rejected"] == 0


def broken_at_import(src):
    path = src / "firmware" / "app.py"
    path.write_text('raise ImportError("release 2 cannot start")\n' + path.read_text())


@pytest.mark.parametrize("change", [broken_at_import, never_sends], ids=["crash-at-import", "no-ack"])
def test_a_release_that_cannot_send_rolls_back_by_itself(rig, change):
    rig.release(2, "broken", change)
    rig.start()
    board = rig.board().start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=30)
    rig.offer(2)
    board.wait_for(lambda b: "ota: v2 not confirmed after %d boots: rolled back to v1" % TRIAL_BOOTS in b.lines, timeout=120)
    after = len(board.lines)
    board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 3
                   and set(numbers(b, "queued")) <= set(numbers(b, "acked")), timeout=60)
    board.stop()
    trial_boots = [line for line in board.lines if line.startswith("ota: v2 on trial, boot ")]
    assert len(trial_boots) == TRIAL_BOOTS
    assert read_state(board.flash) == ["0", "1", "0", "0", "0", "1"]  # the floor stays: v2 was never confirmed
    assert lib_is_complete(board.flash, rig.releases)
    assert read_counts(board.flash) == {"staged": 1, "rolled_back": 1}
    sealed = numbers(board, "sealed")
    assert sealed == sorted(set(sealed)), "a sequence number was reused across the rollback"
    stored = [r["seq"] for r in rig.receiver.readings("dev")]
    assert len(stored) == len(set(stored)) and rig.receiver.device("dev")["rejected"] == 0
    if change is never_sends:  # readings the trial queued are delivered by version 1 after the rollback
        assert set(numbers(board, "queued")) <= set(stored)
    ota = rig.receiver.device("dev")["ota"]
    assert (ota["running"], ota["offered"], ota["on_trial"], ota["state"]) == (1, 2, False, "failed")


POWER_CUTS = 20  # inside an update: offer pending, fetching, staged, swapping or on trial
MAX_CUTS = 80
LAST_RELEASE = 40  # releases 2.. offered in turn (signed copies of one build: cheap); a delta often completes uncut


def in_update(flash):
    """At the moment of a cut: was an update under way (read from the flash)?"""
    state = read_state(flash)
    return ((flash / "ota-offer.bin").exists() or (flash / "ota" / "staging").exists()
            or (state is not None and state[0] != "0"))


def staged_files(flash):
    try:
        return sum(1 for p in (flash / "ota" / "staging").rglob("*") if p.is_file())
    except OSError:  # the board renamed it meanwhile
        return 0


@pytest.mark.parametrize("rom", [False, True], ids=["lib", "romfs-delta"])
def test_power_cuts_during_download_and_switch_always_boot_a_whole_version(rig, rom):
    """Each cut falls at a random file of the download (each boot resumes
    where the last one was cut), or, when chosen, at the swap or trial;
    a download that completes uncut is left to confirm, and then the next
    version is offered, until POWER_CUTS cuts fell inside an update. After
    every cut the next boot runs one whole release. The cut points are read
    from the flash, never raced against the board's speed: a trial is cut
    only when chosen, else it confirms however slow the machine is.
    romfs-delta: a ROMFS board, each release a delta over the image (app.mpy
    into /lib, the rest from /rom): the download is release.txt,
    release.sig, app.mpy and /lib/rom-delta.txt, cut between any two, or at
    the swap; the image itself is never written."""
    import time

    for version in range(2, LAST_RELEASE + 1):
        rig.release(version, "v2", mark_release(2))
    rig.start()
    board = rig.board(rom=rom).start()
    spread = 3 if rom else 12  # files further into the download at which to cut
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=30)
    rnd = random.Random(17)  # the same choices every run (what they hit still varies a little)
    offered = 2
    rig.offer(offered)
    inside = []
    booted = []
    completed = 0
    cuts = 0

    def confirmed(b):
        state = read_state(b.flash)
        return state is not None and int(state[1]) == offered and state[0] == "0" or (
            state is not None and state[0] == "2" and int(state[2]) == offered
            and (b.flash / "ota" / "confirmed.txt").exists())

    while len(inside) < POWER_CUTS and cuts < MAX_CUTS:
        # The cut point, chosen on the flash (the board's console reaches us
        # late, through a pipe): once 1-`spread` more files of /ota/staging exist
        # than at the last cut (so every boot makes progress: a boot cut
        # before its first byte counts as a failed attempt, and 5 of those
        # refuse the offer), or at the swap / on trial when `at_switch` says so.
        target = staged_files(board.flash) + rnd.randint(1, spread)
        at_switch = rnd.random() < 0.5
        cut = True  # also when nothing happened within the deadline
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = read_state(board.flash)
            if state is not None and state[0] != "0":  # swapping, on trial (or confirmed, not yet recorded)
                cut = at_switch
                break
            if in_update(board.flash) and staged_files(board.flash) >= target:
                break
            time.sleep(0.003)
        if not cut:  # this update goes through uncut: its trial confirms, then the next one is offered
            board.wait_for(confirmed, timeout=60)
            completed += 1
            assert offered < LAST_RELEASE, "ran out of releases to offer"
            after = len(board.lines)
            board.wait_for(lambda b: any(l.startswith("acked ") for l in b.lines[after:]), timeout=30)
            offered += 1
            rig.offer(offered)
            continue
        board.power_off()
        cuts += 1
        if in_update(board.flash):
            inside.append(cuts)
        board.start()
        seen = len(board.lines)
        board.wait_for(lambda b: any(l.startswith("ota: v") for l in b.lines[seen:]), timeout=30)
        booted.append([l for l in board.lines[seen:] if l.startswith("ota: v")][0])
        assert lib_is_complete(board.flash, rig.releases), "cut %d: /lib is not one whole release (%s)" % (cuts, booted[-1])
        state = read_state(board.flash)
        if state[0] == "0" and not (board.flash / "ota-offer.bin").exists():  # no update under way
            board.wait_for(lambda b: any(l.startswith("acked ") for l in b.lines[seen:]), timeout=30)
            if int(state[1]) == offered:
                offered += 1  # the next update to cut into
                completed += 1
            # else: the cut took the offer (command sent, board killed before it
            # was saved), its attempts, or its trial boots (rolled back):
            # offered again, as the host would
            assert offered <= LAST_RELEASE, "ran out of releases to offer after %d cuts" % cuts
            rig.offer(offered)
    assert len(inside) >= POWER_CUTS, "only %d of %d cuts fell inside an update" % (len(inside), cuts)
    board.wait_for(lambda b: any(l.startswith("acked ") for l in b.lines[-5:]), timeout=60)
    board.stop()
    assert lib_is_complete(board.flash, rig.releases)
    assert completed >= 1 and int(read_state(board.flash)[1]) >= 3, "no update completed between the cuts"
    sealed = numbers(board, "sealed")
    assert sealed == sorted(set(sealed)), "a sequence number was reused"
    assert rig.receiver.device("dev")["rejected"] == 0
    if rom:
        assert lib_units(board.flash) == ["app"]


def test_a_romfs_board_updates_as_a_delta_over_its_rom_and_rolls_back_to_its_rom(rig):
    """A wemos as deployed (modules in the ROMFS image, no /lib): a broken
    release 2 (app.py changed: only app.mpy is fetched into /lib) is rolled
    back to the image's version (/lib emptied, /rom runs again), then
    release 3 runs its app.mpy from /lib and every other module from /rom
    (/lib before /rom on sys.path), at 48k."""
    rig.release(2, "broken", broken_at_import)
    rig.release(3, "v3", mark_release(3))
    rig.start()
    board = rig.board(rom=True).start()
    assert board.romfs is not None and not (board.flash / "lib").exists()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 2, timeout=30)
    rig.offer(2)
    board.wait_for(lambda b: "ota: v2 not confirmed after %d boots: rolled back to v1" % TRIAL_BOOTS in b.lines, timeout=120)
    assert not any(p.is_file() for p in (board.flash / "lib").rglob("*")), "the factory version is the ROMFS image's"
    after = len(board.lines)
    board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 2, timeout=60)
    rig.offer(3)
    board.wait_for(lambda b: "ota: v3 confirmed" in b.lines, timeout=60)
    assert "app release 3" in board.lines  # release 3's app.mpy from /lib, not the image's
    assert lib_units(board.flash) == ["app"] and [p.name for p in (board.flash / "lib").rglob("*.mpy")] == ["app.mpy"]
    board.power_cut()
    board.wait_for(lambda b: b.lines.count("ota: v3 confirmed") >= 2, timeout=30)
    after = len(board.lines)
    board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 2 and b.stats, timeout=30)
    board.stop()
    assert board.lines.count("app release 3") == 2  # the trial boot's, and the boot after the cut
    assert read_state(board.flash) == ["0", "3", "0", "0", "0", "3"]
    assert lib_is_complete(board.flash, rig.releases)
    assert read_counts(board.flash) == {"staged": 2, "rolled_back": 1, "confirmed_trials": 1}
    assert not any("MemoryError" in line for line in board.lines)
    sealed = numbers(board, "sealed")
    assert sealed == sorted(set(sealed))
    assert rig.receiver.device("dev")["rejected"] == 0


DHT22 = [{"type": "dht22", "pin": 4}]  # from /lib a MemoryError at boot at 48k; from ROMFS it fits (docs/firmware.md)


def dht_release(number):
    """Changes two modules: app.py (says where it and two unchanged modules
    were imported from) and sensor_dht.py (says where it runs from)."""
    def change(src):
        with open(src / "firmware" / "app.py", "a") as f:
            f.write('\nprint("app release %d: %%s, lazy %%s, mpseal %%s" %% (__file__, lazy.__file__, mpseal.__file__))\n'
                    % number)
        path = src / "firmware" / "sensor_dht.py"
        text = path.read_text()
        assert "    def __init__(self, spec):\n" in text
        path.write_text(text.replace("    def __init__(self, spec):\n", "    def __init__(self, spec):\n"
                                     "        print(\"sensor_dht release %d: %%s\" %% __file__)\n" % number))
    return change


def both(*changes):
    def change(src):
        for one in changes:
            one(src)
    return change


def drop_module(src):
    (src / "firmware" / "hw_unix_ds18x20.py").unlink()  # in the image; not loaded by a DHT22 board


def heap_high(board, after):
    """The heap high-water (without the simulated image's block) of the
    STATS lines printed after line `after`."""
    import json

    return max(json.loads(l[6:])["heap_high"] for l in board.lines[after:] if l.startswith("STATS ")) - board.heap_offset


def test_a_romfs_board_that_needs_romfs_updates_as_a_delta_and_keeps_running_from_its_rom(rig):
    """DHT22 at 48k fits only from ROMFS. Release 2 changes two modules: the
    board fetches those two into /lib, confirms, and runs every other
    module from the image. Release 3 (a delta too) crashes at import and is
    rolled back to release 2 exactly. Release 4 drops a module the image
    has, so it must come whole from /lib (the old way): it runs out of heap
    on trial and is rolled back to release 2."""
    rig.release(2, "dht2", dht_release(2))
    rig.release(3, "dht3", both(dht_release(3), broken_at_import))
    rig.release(4, "dht4", both(dht_release(4), drop_module))
    rig.start()
    board = rig.board(rom=True, sensors=DHT22).start()
    board.wait_for(lambda b: len(numbers(b, "acked")) >= 3 and b.stats, timeout=30)
    heap_v1 = heap_high(board, 0)
    rig.offer(2)
    board.wait_for(lambda b: "ota: v2 confirmed" in b.lines, timeout=60)
    assert "ota: from /lib: app sensor_dht; the rest runs from /rom" in board.lines
    assert lib_units(board.flash) == ["app", "sensor_dht"]
    assert sorted(p.name for p in (board.flash / "lib").iterdir()) == ["app.mpy", "release.sig", "release.txt",
                                                                       "rom-delta.txt", "sensor_dht.mpy"]
    assert "app release 2: /lib/app.mpy, lazy /rom/lazy.mpy, mpseal /rom/mpseal/__init__.mpy" in board.lines
    assert "sensor_dht release 2: /lib/sensor_dht.mpy" in board.lines
    board.power_cut()  # the next boot records the confirmation
    board.wait_for(lambda b: b.lines.count("ota: v2 confirmed") >= 2, timeout=30)
    after = len(board.lines)
    board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 3
                   and any(l.startswith("STATS ") for l in b.lines[after:]), timeout=30)
    heap_v2 = heap_high(board, after)
    assert read_state(board.flash) == ["0", "2", "0", "0", "0", "2"]
    assert lib_is_complete(board.flash, rig.releases)

    rig.offer(3)  # a delta over the image as well, which cannot start
    board.wait_for(lambda b: "ota: v3 not confirmed after %d boots: rolled back to v2" % TRIAL_BOOTS in b.lines, timeout=120)
    back = board.lines.index("ota: v3 not confirmed after %d boots: rolled back to v2" % TRIAL_BOOTS)
    after = len(board.lines)
    board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 2, timeout=60)
    assert "app release 2: /lib/app.mpy, lazy /rom/lazy.mpy, mpseal /rom/mpseal/__init__.mpy" in board.lines[back:]
    assert read_state(board.flash) == ["0", "2", "0", "0", "0", "2"] and lib_units(board.flash) == ["app", "sensor_dht"]
    assert lib_is_complete(board.flash, rig.releases)

    rig.offer(4)  # whole into /lib: the image's hw_unix_ds18x20 must not stay importable
    board.wait_for(lambda b: "ota: v4 not confirmed after %d boots: rolled back to v2" % TRIAL_BOOTS in b.lines, timeout=120)
    back = board.lines.index("ota: v4 not confirmed after %d boots: rolled back to v2" % TRIAL_BOOTS)
    trial = board.lines[board.lines.index("ota: v4 on trial, boot 1 of %d" % TRIAL_BOOTS):]
    assert any("MemoryError" in l for l in trial), "release 4 from /lib was expected not to fit 48k"
    after = len(board.lines)
    board.wait_for(lambda b: len([l for l in b.lines[after:] if l.startswith("acked ")]) >= 2, timeout=60)
    board.stop()
    assert "app release 2: /lib/app.mpy, lazy /rom/lazy.mpy, mpseal /rom/mpseal/__init__.mpy" in board.lines[back:]
    assert read_state(board.flash) == ["0", "2", "0", "0", "0", "2"] and lib_units(board.flash) == ["app", "sensor_dht"]
    assert lib_is_complete(board.flash, rig.releases)
    assert read_counts(board.flash) == {"staged": 3, "confirmed_trials": 1, "rolled_back": 2}
    assert not any("MemoryError" in l for l in board.lines[:board.lines.index("ota: v4 on trial, boot 1 of %d" % TRIAL_BOOTS)])
    sealed = numbers(board, "sealed")
    assert sealed == sorted(set(sealed))
    assert rig.receiver.device("dev")["rejected"] == 0
    print("heap high-water at 48k, DHT22: v1 (image) %d bytes, v2 (delta: 2 modules from /lib) %d bytes"
          % (heap_v1, heap_v2))
    assert heap_v2 < 48 * 1024

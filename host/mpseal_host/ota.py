"""Over-the-air updates on the host side (docs/ota.md): the receiver serves
release folders (`mpseal release` output) over HTTP, Range requests
included, so a board resumes a file where a dropped link or a power cut left
it. Signatures, not this server, prove where a release comes from: anyone
may read these files, and a board refuses any byte the release key did not
sign.

    GET /ota/<board>/<version>/release.txt | release.sig | files/<path on the board>
"""
import os

URL_PREFIX = "/ota/"


def add_arguments(parser):
    parser.add_argument("--releases", help="serve this releases folder (mpseal release --releases) at %s for OTA updates"
                        % URL_PREFIX)


def add_routes(app, releases):
    """Static routes over `releases`: aiohttp's FileResponse answers Range
    requests (206, 416) and never follows a path out of the folder."""
    if releases:
        if not os.path.isdir(releases):
            raise ValueError("--releases %s: no such folder (make one with 'mpseal release')" % releases)
        app.router.add_static(URL_PREFIX, os.path.abspath(releases), show_index=False, follow_symlinks=False)


def release_url(base, board, version):
    """The URL a board fetches release `version` of `board` from, given the
    receiver's base URL (http://host:port/)."""
    return "%s%s%s/%d/" % (base.rstrip("/"), URL_PREFIX, board, version)


# --- the fleet view: assigned (offered) vs running version --------------------

# Update states of a device, from what the host sent and what the board says
# in its readings (app_release, app_on_trial: docs/ota.md "Status").
NO_STATUS = "no status"  # the board sends no app_release (never given update state)
CURRENT = "current"  # no offer, or running the offered version (or a newer one), confirmed
QUEUED = "queued"  # the offer waits for the device's next reading
OFFERED = "offered"  # sent; no reading sealed after it yet (the board fetches at its next boot)
ON_TRIAL = "on trial"  # the offered version runs, not yet confirmed
FAILED = "failed"  # a reading sealed after the offer runs another version: refused or rolled back


def offered_version(argument):
    """The version an update-offer argument names, or None for a malformed one."""
    return int.from_bytes(argument[:4], "big") if len(argument) > 36 else None


def update_status(latest, offer):
    """The OTA view of one device (I/O-free). latest: its newest reading
    dict (or None); offer: (argument, sent_at, acked_device_seq) of the
    newest update-offer queued for it (Storage.latest_commands), or None.
    Returns {running, on_trial, offered, offered_at, state}."""
    value = latest.get("value") if latest else None
    value = value if isinstance(value, dict) else {}
    running = value.get("app_release")
    running = running if isinstance(running, int) and not isinstance(running, bool) else None
    on_trial = bool(value.get("app_on_trial")) and running is not None
    offered, sent_at, acked_seq = (offered_version(offer[0]), offer[1], offer[2]) if offer else (None, None, None)
    if offered is None:
        state = NO_STATUS if running is None else (ON_TRIAL if on_trial else CURRENT)
    elif sent_at is None:
        state = QUEUED
    elif running is not None and running >= offered:
        state = ON_TRIAL if on_trial and running == offered else CURRENT
    elif latest is not None and acked_seq is not None and latest["seq"] > acked_seq:
        # The board reboots right after the ack that carried the offer, and
        # its update agent runs before the next reading is sealed.
        state = FAILED
    else:
        state = OFFERED
    return {"running": running, "on_trial": on_trial, "offered": offered, "offered_at": sent_at, "state": state}


# --- groups, pins and staged rollouts (the plan: Storage.ota_plan) -----------
#
# plan = {"groups": {group: [device, ...]},
#         "pins": {device: {"version", "board", "url", "releases"}},
#         "rollouts": {group: {"version", "board", "url", "releases", "wave",
#                              "max_failures", "state", "offered": [...],
#                              "failed": [...], "why"}}}
# A pinned device gets its pin's version and nothing else: a group rollout
# passes it by. A rollout offers its version to at most `wave` devices at a
# time (those not yet done); once `max_failures` of the devices it offered
# to failed (refused, rolled back: update_status), it pauses and offers no
# more until resumed.

RUNNING, PAUSED, DONE = "running", "paused", "done"


def assigned_versions(plan):
    """{device: version it is assigned}: its pin, else its group's rollout."""
    assigned = {}
    for group, rollout in sorted((plan.get("rollouts") or {}).items()):
        for device in (plan.get("groups") or {}).get(group, ()):
            assigned.setdefault(device, rollout["version"])
    for device, pin in (plan.get("pins") or {}).items():
        assigned[device] = pin["version"]
    return assigned


def is_done(status, version):
    return status["running"] is not None and status["running"] >= version and not status["on_trial"]


def rollout_step(rollout, members, statuses, pinned=()):
    """One step of a staged rollout (I/O-free). members: the group's devices
    in rollout order; statuses: {device: update_status(...)}. Returns
    (devices to offer the version to now, the rollout updated)."""
    rollout = dict(rollout)
    version = rollout["version"]
    offered = list(rollout.get("offered", ()))
    failed = list(rollout.get("failed", ()))
    in_flight = 0
    for device in offered:
        status = statuses.get(device)
        if status is None or device in failed or is_done(status, version):
            continue
        if status["state"] == FAILED and status["offered"] == version:
            failed.append(device)
        else:
            in_flight += 1
    rollout["failed"] = failed
    todo = [d for d in members if d not in pinned and d not in offered and not (d in statuses and is_done(statuses[d], version))]
    to_offer = []
    if rollout.get("state", RUNNING) == RUNNING:
        if len(failed) >= rollout["max_failures"]:
            rollout["state"] = PAUSED
            rollout["why"] = "%d of %d offered devices failed (threshold %d): %s" % (
                len(failed), len(offered), rollout["max_failures"], ", ".join(failed))
        else:
            to_offer = todo[:max(0, rollout["wave"] - in_flight)]
            if not to_offer and not todo and not in_flight:
                rollout["state"] = DONE
                rollout["why"] = "%d done, %d failed" % (
                    sum(1 for d in members if d in statuses and is_done(statuses[d], version)), len(failed))
    rollout["offered"] = offered + to_offer
    return to_offer, rollout


def fleet_statuses(storage):
    """({device name: update_status(...) + "assigned"}, plan) from storage."""
    from mpseal.control import CMD_UPDATE_OFFER

    plan = storage.ota_plan()
    assigned = assigned_versions(plan)
    latest = storage.latest_readings()
    offers = storage.latest_commands(CMD_UPDATE_OFFER)
    statuses = {}
    for device in storage.list_devices():
        status = update_status(latest.get(device.name), offers.get(device.id))
        status["assigned"] = assigned.get(device.name)
        statuses[device.name] = status
    return statuses, plan

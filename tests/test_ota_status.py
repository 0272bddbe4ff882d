"""The OTA fleet view's core (mpseal_host.ota.update_status, I/O-free):
offered vs running version per device, from the newest reading's sealed
app_release / app_on_trial values and the newest update-offer."""
from mpseal import control
from mpseal_host.ota import CURRENT, FAILED, NO_STATUS, OFFERED, ON_TRIAL, QUEUED, update_status


def reading(seq, **value):
    return {"seq": seq, "value": value}


def offer(version, sent_at=None, acked_seq=None):
    return (control.update_offer(version, b"\0" * 32, b"http://h:1/ota/wemos/%d/" % version)[1], sent_at, acked_seq)


def state(latest, newest_offer=None):
    return update_status(latest, newest_offer)["state"]


def test_states_from_what_was_sent_and_what_the_board_says():
    assert state(None) == NO_STATUS
    assert state(reading(5, temperature=20.0)) == NO_STATUS
    assert state(reading(5, app_release=1)) == CURRENT
    assert state(reading(5, app_release=1), offer(2)) == QUEUED
    assert state(reading(5, app_release=1), offer(2, 100.0, 5)) == OFFERED  # no reading sealed after the ack yet
    assert state(reading(6, app_release=2, app_on_trial=1), offer(2, 100.0, 5)) == ON_TRIAL
    assert state(reading(7, app_release=2), offer(2, 100.0, 5)) == CURRENT
    assert state(reading(7, app_release=3), offer(2, 100.0, 5)) == CURRENT  # a newer one runs
    assert state(reading(6, app_release=1), offer(2, 100.0, 5)) == FAILED  # refused, or rolled back
    assert state(reading(6, temperature=1.0), offer(2, 100.0, 5)) == FAILED  # nothing says it runs 2


def test_the_view_carries_both_versions():
    view = update_status(reading(6, app_release=1), offer(2, 100.0, 5))
    assert view == {"running": 1, "on_trial": False, "offered": 2, "offered_at": 100.0, "state": FAILED}


def test_odd_values_are_no_version():
    assert update_status(reading(5, app_release="2"), None)["running"] is None
    assert update_status(reading(5, app_release=True), None)["running"] is None
    assert update_status({"seq": 1, "value": [1, 2]}, None)["state"] == NO_STATUS
    assert update_status(reading(5, app_release=1), (b"\0" * 10, 1.0, 1))["offered"] is None  # malformed argument

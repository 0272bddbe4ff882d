"""release-key, release, ota: signed over-the-air app updates (docs/ota.md)."""
import os

DEFAULT_BOARD = "wemos"
DEFAULT_RELEASES = "releases"


def cmd_release_key_new(args):
    from mpseal_tools.release import key_file_path, key_id, new_key

    public = new_key(args.key_file)
    print("release key written to %s (mode 0600; keep it offline, back it up)" % key_file_path(args.key_file))
    print("key id %s; list this public key in each board's config.json \"ota\": {\"keys\": [...]}:" % key_id(public))
    print(public.hex())


def cmd_release_key_show(args):
    from mpseal_tools.release import key_id, load_key, public_bytes

    public = public_bytes(load_key(args.key_file).public_key())
    print("key id %s" % key_id(public))
    print(public.hex())


def cmd_release(args):
    from mpseal_tools.build import load_manifest
    from mpseal_tools.release import make_release

    build_dir, manifest = load_manifest(args.board, args.out)
    folder, digest = make_release(build_dir, manifest, args.version, args.name, args.releases, args.key_file)
    total = sum(f["size"] for f in manifest["files"])
    print("release %s version %d (%s): %d files, %d bytes, in %s" % (
        manifest["board"], args.version, args.name, len(manifest["files"]), total, os.path.relpath(folder)))
    print("manifest sha256 %s" % digest)


def offer_command(releases, board, version, base_url):
    """(opcode, argument) of the update-offer for release `version`, checked
    to exist and to be signed (the board checks the signature itself)."""
    import hashlib

    from mpseal import control
    from mpseal_host.errors import UserError
    from mpseal_host.ota import release_url
    from mpseal_tools.release import MANIFEST, SIGNATURE

    folder = os.path.join(releases, board, str(version))
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as f:
            digest = hashlib.sha256(f.read()).digest()
        os.stat(os.path.join(folder, SIGNATURE))
    except FileNotFoundError:
        raise UserError("no signed release %s version %d in %s: make it with 'mpseal release'" % (board, version, releases))
    try:
        return control.update_offer(version, digest, release_url(base_url, board, version))
    except ValueError as exc:
        raise UserError(str(exc))


def cmd_ota_offer(args):
    from mpseal_host.commands.options import queue_command

    command = offer_command(args.releases, args.board, args.version, args.url)
    command_id = queue_command(args, args.device, command)
    print("queued update-offer v%d for %s (command %d): it goes out with the next ack" % (args.version, args.device, command_id))


def register(subparsers):
    def key_option(q):
        q.add_argument("--key-file", help="release key file (default: $MPSEAL_RELEASE_KEY or ~/.config/mpseal/release-key.pem)")

    p = subparsers.add_parser("release-key", help="the offline key that signs app releases")
    sub = p.add_subparsers(dest="release_key_command", metavar="ACTION", required=True)
    q = sub.add_parser("new", help="make a new P-256 release key (never overwrites one)")
    key_option(q)
    q.set_defaults(func=cmd_release_key_new)
    q = sub.add_parser("show", help="print the public key and its id (for config.json)")
    key_option(q)
    q.set_defaults(func=cmd_release_key_show)

    p = subparsers.add_parser("release", help="sign a `mpseal build` output as a versioned release for OTA updates")
    p.add_argument("--board", default=DEFAULT_BOARD, help="the build's board (default %(default)s)")
    p.add_argument("--version", type=int, required=True, help="release number, above every earlier one (anti-rollback)")
    p.add_argument("--name", required=True, help="human version string, e.g. 1.2.0")
    p.add_argument("--out", help="build folder (default: build/ in the repository)")
    p.add_argument("--releases", default=DEFAULT_RELEASES, help="releases folder (default %(default)s/)")
    key_option(p)
    p.set_defaults(func=cmd_release)

    p = subparsers.add_parser("ota", help="over-the-air updates: offer a signed release to a device")
    sub = p.add_subparsers(dest="ota_command", metavar="ACTION", required=True)
    q = sub.add_parser("offer", help="send one device a sealed update-offer for a release")
    q.add_argument("device")
    q.add_argument("--version", type=int, required=True)
    q.add_argument("--board", default=DEFAULT_BOARD)
    q.add_argument("--releases", default=DEFAULT_RELEASES)
    q.add_argument("--url", required=True, help="the receiver's base URL as boards reach it, e.g. http://192.168.1.10:8740/")
    from mpseal_host.commands.options import add_db_option

    add_db_option(q)
    q.set_defaults(func=cmd_ota_offer)
    register_fleet(sub)


# --- groups, pins, staged rollouts (mpseal_host.ota: the plan) ----------------

def _release_target(args):
    """The release settings an assignment keeps, checked now (the release
    must exist and be signed) so a rollout step never fails on them."""
    offer_command(args.releases, args.board, args.version, args.url)
    return {"version": args.version, "board": args.board, "url": args.url, "releases": os.path.abspath(args.releases)}


def cmd_ota_group(args):
    from mpseal_host.commands.options import open_db
    from mpseal_host.errors import UserError

    storage = open_db(args)
    try:
        known = {d.name for d in storage.list_devices()}
        unknown = [d for d in args.devices if d not in known]
        if unknown:
            raise UserError("no such device: %s (see 'mpseal devices list')" % ", ".join(unknown))

        def change(plan):
            groups = dict(plan.get("groups") or {})
            groups[args.group] = list(dict.fromkeys(args.devices))
            return dict(plan, groups=groups)

        storage.change_ota_plan(change)
    finally:
        storage.close()
    print("group %s: %d devices" % (args.group, len(set(args.devices))))


def cmd_ota_assign(args):
    from mpseal_host.commands.options import open_db
    from mpseal_host.errors import UserError

    target = _release_target(args)
    storage = open_db(args)
    try:
        if args.device:
            storage.get_device(args.device)  # NoSuchDevice: a one-line error

            def change(plan):
                pins = dict(plan.get("pins") or {})
                pins[args.device] = target
                return dict(plan, pins=pins)
        else:
            if args.wave < 1 or args.max_failures < 1:
                raise UserError("--wave and --max-failures must be 1 or more")
            if args.group not in (storage.ota_plan().get("groups") or {}):
                raise UserError("no group %s: make it with 'mpseal ota group %s DEVICE...'" % (args.group, args.group))

            def change(plan):
                rollouts = dict(plan.get("rollouts") or {})
                rollouts[args.group] = dict(target, wave=args.wave, max_failures=args.max_failures, state="running",
                                            offered=[], failed=[], why="")
                return dict(plan, rollouts=rollouts)

        change_then_step(storage, change)
    finally:
        storage.close()


def change_then_step(storage, change):
    """Applies one change to the fleet plan, then runs the step it makes due
    (assign and resume offer at once rather than at the next rollout run)."""
    storage.change_ota_plan(change)
    for line in rollout_once(storage):
        print(line)


def rollout_once(storage):
    """One step of every pin and running rollout: queues the offers due now,
    records progress and pauses; returns the lines to print."""
    from mpseal_host import ota

    statuses, plan = ota.fleet_statuses(storage)
    lines = []
    for device, pin in sorted((plan.get("pins") or {}).items()):
        status = statuses.get(device)
        if status is None or ota.is_done(status, pin["version"]) or status["offered"] == pin["version"]:
            continue
        storage.queue_command(device, offer_command(pin["releases"], pin["board"], pin["version"], pin["url"]))
        lines.append("pin %s: offered v%d" % (device, pin["version"]))
    steps = {}
    for group, rollout in sorted((plan.get("rollouts") or {}).items()):
        if rollout.get("state") != ota.RUNNING:
            continue
        members = (plan.get("groups") or {}).get(group, [])
        to_offer, after = ota.rollout_step(rollout, members, statuses, pinned=set(plan.get("pins") or ()))
        for device in to_offer:
            storage.queue_command(device, offer_command(rollout["releases"], rollout["board"], rollout["version"], rollout["url"]))
        steps[group] = after
        done = sum(1 for d in members if d in statuses and ota.is_done(statuses[d], rollout["version"]))
        lines.append("rollout %s v%d: %s, %d/%d done, %d failed%s%s" % (
            group, rollout["version"], after["state"], done, len(members), len(after["failed"]),
            ", offered now: " + " ".join(to_offer) if to_offer else "", " (%s)" % after["why"] if after.get("why") else ""))

    def change(current):
        rollouts = dict(current.get("rollouts") or {})
        for group, after in steps.items():
            if group in rollouts and rollouts[group].get("version") == after["version"]:
                rollouts[group] = after
        return dict(current, rollouts=rollouts)

    if steps:
        storage.change_ota_plan(change)
    return lines


def cmd_ota_rollout(args):
    import time

    from mpseal_host.commands.options import open_db

    deadline = time.monotonic() + (args.watch_for or 0)
    while True:
        storage = open_db(args)
        try:
            lines = rollout_once(storage)
        finally:
            storage.close()
        for line in lines:
            print(line, flush=True)
        if not args.watch_for or time.monotonic() >= deadline:
            return
        time.sleep(args.every)


def cmd_ota_resume(args):
    from mpseal_host import ota
    from mpseal_host.commands.options import open_db
    from mpseal_host.errors import UserError

    storage = open_db(args)
    try:
        def change(plan):
            rollouts = dict(plan.get("rollouts") or {})
            if rollouts.get(args.group, {}).get("state") != ota.PAUSED:
                raise UserError("rollout %s is not paused" % args.group)
            # The failed devices stay offered (not offered again); the
            # threshold counts failures from here on.
            rollouts[args.group] = dict(rollouts[args.group], state=ota.RUNNING, why="",
                                        max_failures=rollouts[args.group]["max_failures"] + len(rollouts[args.group]["failed"]))
            return dict(plan, rollouts=rollouts)

        change_then_step(storage, change)
    finally:
        storage.close()


def register_fleet(sub):
    from mpseal_host.commands.options import add_db_option

    q = sub.add_parser("group", help="set the devices of a group (for staged rollouts)")
    q.add_argument("group")
    q.add_argument("devices", nargs="+", metavar="DEVICE")
    add_db_option(q)
    q.set_defaults(func=cmd_ota_group)

    q = sub.add_parser("assign", help="pin a device to a release, or roll one out to a group in waves")
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", help="pin this device to --version (a group rollout passes it by)")
    who.add_argument("--group", help="roll --version out to this group (mpseal ota group)")
    q.add_argument("--version", type=int, required=True)
    q.add_argument("--board", default=DEFAULT_BOARD)
    q.add_argument("--releases", default=DEFAULT_RELEASES)
    q.add_argument("--url", required=True, help="the receiver's base URL as boards reach it, e.g. http://192.168.1.10:8740/")
    q.add_argument("--wave", type=int, default=1, help="group: devices updating at a time (default %(default)s)")
    q.add_argument("--max-failures", type=int, default=1,
                   help="group: pause the rollout once this many devices failed (default %(default)s)")
    add_db_option(q)
    q.set_defaults(func=cmd_ota_assign)

    q = sub.add_parser("rollout", help="one step of every pin and rollout (offers due now, pauses); --watch-for to repeat")
    q.add_argument("--watch-for", type=float, metavar="SECONDS", help="repeat for this long")
    q.add_argument("--every", type=float, default=5.0, metavar="SECONDS", help="with --watch-for: seconds between steps")
    add_db_option(q)
    q.set_defaults(func=cmd_ota_rollout)

    q = sub.add_parser("resume", help="resume a paused rollout (its failed devices are not offered again)")
    q.add_argument("group")
    add_db_option(q)
    q.set_defaults(func=cmd_ota_resume)

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
    from mpseal_host.commands.options import open_db

    command = offer_command(args.releases, args.board, args.version, args.url)
    storage = open_db(args)
    try:
        command_id = storage.queue_command(args.device, command)
    finally:
        storage.close()
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

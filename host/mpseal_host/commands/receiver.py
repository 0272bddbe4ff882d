"""receive, devices add|list|remove, stats, command, token: the operator's commands."""
import asyncio
import json
import logging

from mpseal import control
from mpseal_host.commands.options import add_db_option, address_option, open_db, queue_command
from mpseal_host.errors import UserError

# Ingest listens where boards can reach it (a sealed packet is safe from
# anywhere); the API and page stay on loopback unless asked (docs/receiver.md).
DEFAULT_UDP = "0.0.0.0:4740"
DEFAULT_HTTP = "0.0.0.0:8740"
DEFAULT_API = "127.0.0.1:8741"


def cmd_receive(args):
    from mpseal_host import settings
    from mpseal_host.access import is_loopback
    from mpseal_host.receiver import board_addresses, serve
    from mpseal_host.retention import Pruner

    configured = settings.receive_settings()
    udp = address_option(args.udp or configured.get("udp", DEFAULT_UDP), "--udp", listen=True)
    http = address_option(args.http or configured.get("http", DEFAULT_HTTP), "--http", listen=True)
    api = address_option(args.api or configured.get("api", DEFAULT_API), "--api", listen=True)
    keep_days = args.keep_days if args.keep_days is not None else configured.get("keep_days")
    if keep_days is not None and keep_days < 1:
        raise UserError("--keep-days must be 1 or more (leave it out to keep every reading)")
    if not udp and not http and not args.modem:
        raise UserError("both --udp and --http are off: nothing to receive on")
    if args.releases and not http:
        raise UserError("--releases is served on the HTTP ingest listener (where boards reach it) and --http is off:"
                        " give --http HOST:PORT")
    mqtt = _mqtt_settings(args, configured)
    storage = open_db(args, create=True, serving=True)
    if api and (args.require_token or not is_loopback(api[0])) and not storage.list_tokens():
        storage.close()
        raise UserError("the API on %s:%d needs a token and there is none: create one with"
                        " 'mpseal token new NAME' (or keep --api on 127.0.0.1)" % api)
    pruner = Pruner(lambda: open_db(args), keep_days).start() if keep_days else None
    from mpseal_host.modem_receiver import start_from_args  # --modem (docs/sms.md)

    modem = start_from_args(args, storage.location)

    def ready(receiver):
        parts = []
        if receiver.udp_address:
            parts.append("udp %s:%d" % tuple(receiver.udp_address))
        if receiver.http_address:
            parts.append("http %s:%d" % tuple(receiver.http_address))
        if receiver.api_address:
            parts.append("api http://%s:%d/" % tuple(receiver.api_address))
        if modem:
            parts.append("modem %s" % args.modem)
        if mqtt:
            parts.append("mqtt %s%s:%d" % ("mqtts://" if mqtt.tls else "mqtt://", mqtt.host, mqtt.port))
        # One parseable line: tests and scripts wait for it.
        print("mpseal receive: listening on %s, database %s" % (", ".join(parts), storage.location), flush=True)
        targets = []
        if receiver.udp_address:
            targets.append("udp " + " or ".join(board_addresses(*receiver.udp_address)))
        if receiver.http_address:
            targets.append("http " + " or ".join(board_addresses(*receiver.http_address)))
        if targets:
            print("mpseal receive: boards send to %s (receiver.host / udp_port / http_port in the board config)"
                  % "; ".join(targets), flush=True)
        if receiver.api_address:
            print("mpseal receive: api %s" % ("requires a token (mpseal token new NAME; log in at /login)"
                                              if receiver.require_token else "open to local users (loopback, no token)"), flush=True)

    try:
        asyncio.run(serve(storage, udp, http, api, ready, require_token=args.require_token, api_hosts=args.api_host,
                          mqtt=mqtt, reuse_port=args.reuse_port, releases=args.releases))
    except ValueError as exc:  # --releases folder missing
        raise UserError(str(exc))
    except OSError as exc:
        raise UserError("cannot listen: %s (is another receiver running? pick other ports with --udp/--http/--api)" % exc)
    finally:
        if modem:
            modem.stop()
        if pruner:
            pruner.stop()
    print("mpseal receive: stopped", flush=True)


MQTT_DEFAULTS = {"mqtt_prefix": "mpseal", "mqtt_discovery_prefix": "homeassistant"}


def _mqtt_settings(args, configured):
    """MqttSettings from --mqtt and friends (flags win over the config
    file's [receive] mqtt* keys), or None without a broker."""
    def option(name):
        return getattr(args, name) or configured.get(name) or MQTT_DEFAULTS.get(name)

    if not option("mqtt"):
        return None
    from mpseal_host.integrations.mqtt import MqttConfigError, MqttSettings

    try:
        settings = MqttSettings.from_url(
            option("mqtt"), username=option("mqtt_username"), password_file=option("mqtt_password_file"),
            ca_file=option("mqtt_ca_file"), cert_file=option("mqtt_cert_file"), key_file=option("mqtt_key_file"),
            prefix=option("mqtt_prefix"), discovery_prefix=option("mqtt_discovery_prefix"),
        )
        settings.tls_context()  # unreadable TLS files fail now, not in the background
    except MqttConfigError as exc:
        raise UserError(str(exc))
    if not settings.tls:
        logging.getLogger("mpseal.mqtt").warning(
            "mqtt: %s:%d without TLS: readings cross the network to the broker in plaintext (use mqtts://)",
            settings.host, settings.port)
    return settings


def add_mqtt_arguments(p):
    g = p.add_argument_group("MQTT / Home Assistant (docs/integrations.md)")
    g.add_argument("--mqtt", metavar="URL", help="publish state, availability and HA discovery to mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    g.add_argument("--mqtt-username", metavar="USER", help="broker username (or mqtt://USER@HOST)")
    g.add_argument("--mqtt-password-file", metavar="FILE", help="file whose first line is the broker password (else $MPSEAL_MQTT_PASSWORD)")
    g.add_argument("--mqtt-ca-file", metavar="PEM", help="CA certificate(s) to verify an mqtts:// broker (default: the system's)")
    g.add_argument("--mqtt-cert-file", metavar="PEM", help="client certificate for mqtts://")
    g.add_argument("--mqtt-key-file", metavar="PEM", help="client key for mqtts://")
    g.add_argument("--mqtt-prefix", help="topic prefix for state/availability (default mpseal)")
    g.add_argument("--mqtt-discovery-prefix", help="Home Assistant discovery prefix (default homeassistant)")


def cmd_devices_add(args):
    from mpseal_host.commands.packets import key_from_args

    from mpseal_host.storage.model import check_ttn_id

    key = key_from_args(args, required=False)
    check_ttn_id(args.ttn_id)
    storage = open_db(args, create=True)
    try:
        if args.ttn_id is not None and storage.device_by_ttn_id(args.ttn_id) is not None:
            raise UserError("TTN device id %r belongs to device %r already" % (args.ttn_id, storage.device_by_ttn_id(args.ttn_id).name))
        device = storage.add_device(args.name, key=key, epoch=args.epoch, device_id=args.id)
        if args.ttn_id is not None:
            storage.set_ttn_id(device.id, args.ttn_id)
    finally:
        storage.close()
    print("added device %s: id %d, epoch %d%s" % (device.name, device.id, device.epoch, "" if args.ttn_id is None else ", TTN device " + args.ttn_id))
    if key is None:
        # Printed once, because it was asked for by leaving --key out; it is
        # in the database (mode 0600) and never logged.
        print("key: %s" % device.master_key.hex())
        print("(store it in the board's config.json; 'mpseal provision' does that for you)")


def cmd_devices_set_ttn_id(args):
    ttn_id = None if args.ttn_id == "none" else args.ttn_id
    storage = open_db(args)
    try:
        storage.set_ttn_id(args.name, ttn_id)
    finally:
        storage.close()
    print("device %s: %s" % (args.name, "no TTN device" if ttn_id is None else "TTN device " + ttn_id))


def cmd_devices_list(args):
    from mpseal_host.ota import fleet_statuses

    storage = open_db(args)
    try:
        devices = storage.list_devices()
        statuses, _ = fleet_statuses(storage)
    finally:
        storage.close()
    from mpseal_host.ota import update_status

    updates = {d.id: statuses.get(d.name) or dict(update_status(None, None), assigned=None) for d in devices}
    if args.json:
        print(json.dumps([dict(d.public(), ota=updates[d.id]) for d in devices], indent=2))
        return
    if not devices:
        print("no devices (add one with 'mpseal devices add NAME')")
        return
    print("%-4s %-20s %-5s %-10s %-20s %-6s %8s %8s %8s  %s" % ("id", "name", "epoch", "last seq", "last seen", "via", "stored",
                                                               "dupl.", "rejected", "app: running/offered, update"))
    for d in devices:
        seen = "never" if d.last_seen is None else _time(d.last_seen)
        epoch = str(d.epoch) if d.pending_epoch is None else "%d>%d" % (d.epoch, d.pending_epoch)
        print(
            "%-4d %-20s %-5s %-10d %-20s %-6s %8d %8d %8d  %s"
            % (d.id, d.name, epoch, d.last_seq, seen, d.last_transport or "-", d.stored, d.duplicates, d.rejected,
               _update_column(updates[d.id]))
        )


def _update_column(update):
    def version(v):
        return "-" if v is None else str(v)

    text = "%s/%s %s" % (version(update["running"]), version(update["offered"]), update["state"])
    if update.get("assigned") is not None and update["assigned"] != update["offered"]:
        text += " (assigned %d)" % update["assigned"]
    return text


def _time(t):
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def confirm(question, yes):
    """True when the user agreed: --yes, or 'y' typed at a terminal. Without a
    terminal and without --yes nothing destructive happens."""
    import sys

    if yes:
        return True
    if not sys.stdin.isatty():
        raise UserError("%s — refused without a terminal to ask on: add --yes" % question)
    answer = input("%s [y/N] " % question)
    return answer.strip().lower() in ("y", "yes")


def cmd_devices_remove(args):
    storage = open_db(args)
    try:
        count = storage.count_readings(args.name)
        if not confirm("delete device %s, its keys and its %d stored readings?" % (args.name, count), args.yes):
            print("nothing deleted")
            return 1
        storage.remove_device(args.name)
    finally:
        storage.close()
    print("removed device %s and its %d readings" % (args.name, count))


def cmd_prune(args):
    from mpseal_host.retention import prune

    if args.keep_days < 1:
        raise UserError("--keep-days must be 1 or more")
    storage = open_db(args)
    try:
        if not confirm("delete every reading older than %d days?" % args.keep_days, args.yes):
            print("nothing deleted")
            return 1
        deleted = prune(storage, args.keep_days)
    finally:
        storage.close()
    print("deleted %d readings older than %d days" % (deleted, args.keep_days))


def cmd_stats(args):
    storage = open_db(args)
    stats = storage.stats()
    storage.close()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return
    print("devices %d, packets %d, stored %d, duplicates %d, rejected %d" % (
        stats["devices"], stats["received"], stats["stored"], stats["duplicates"], stats["rejected"]))
    for reason, count in sorted(stats["rejected_by_reason"].items()):
        print("  rejected %-16s %d" % (reason, count))
    for device, reasons in sorted(stats["rejected_by_device"].items()):
        print("  %s: %s" % (device, ", ".join("%s %d" % item for item in sorted(reasons.items()))))
    for device, events in sorted(stats["events_by_device"].items()):
        print("  %s events: %s" % (device, ", ".join("%s %d" % item for item in sorted(events.items()))))
    for device, text in sorted(stats["counter_warnings"].items()):
        print("  WARNING %s: %s" % (device, text))


def cmd_command(args):
    if args.action == "read-now":
        command = control.read_now()
    elif args.action == "reboot":
        command = control.reboot()
    else:
        if args.seconds is None:
            raise UserError("set-interval needs SECONDS, e.g. 'mpseal command greenhouse set-interval 300'")
        try:
            command = control.set_interval(args.seconds)
        except ValueError as exc:
            raise UserError(str(exc))
    if args.action != "set-interval" and args.seconds is not None:
        raise UserError("%s takes no argument" % args.action)
    command_id = queue_command(args, args.device, command)
    print("queued %s for %s (command %d): it goes out with the next ack to the device" % (args.action, args.device, command_id))


def cmd_token_new(args):
    from mpseal_host.access import new_token

    token, digest = new_token()
    storage = open_db(args)
    try:
        storage.add_token(args.name, digest, args.scope)
    finally:
        storage.close()
    print("token %s (%s): %s" % (args.name, args.scope, token))
    print("(shown once, stored hashed: scripts send 'Authorization: Bearer TOKEN'; the page asks for it at /login)")


def cmd_token_list(args):
    storage = open_db(args)
    tokens = storage.list_tokens()
    storage.close()
    if not tokens:
        print("no tokens (create one with 'mpseal token new NAME')")
    for name, scope, created_at in tokens:
        print("%-24s %-6s created %s" % (name, scope, _time(created_at)))


def cmd_token_revoke(args):
    storage = open_db(args)
    try:
        storage.revoke_token(args.name)
    finally:
        storage.close()
    print("revoked token %s" % args.name)


def _action_group(subparsers, name, help):
    """A command that is a group of actions (`mpseal devices add`): alone,
    it prints its help and exits 2."""
    p = subparsers.add_parser(name, help=help)
    p.set_defaults(func=lambda args: p.print_help() or 2)
    return p.add_subparsers(dest=name + "_command", metavar="ACTION")


def _db_action(actions, name, help, func):
    """An action of a group that opens the receiver database (--db)."""
    a = actions.add_parser(name, help=help)
    add_db_option(a)
    a.set_defaults(func=func)
    return a


def register(subparsers):
    p = subparsers.add_parser("receive", help="receive sealed packets over UDP and HTTP; serve the API and web page")
    add_db_option(p)
    p.add_argument("--udp", help="HOST:PORT or 'off' (default: the config file's, else %s)" % DEFAULT_UDP)
    p.add_argument("--http", help="HTTP ingest (POST /api/ingest only): HOST:PORT or 'off' (default: the config file's, else %s)"
                   % DEFAULT_HTTP)
    p.add_argument("--api", help="API + web page: HOST:PORT or 'off' (default: the config file's, else %s;"
                   " any non-loopback address requires a token)" % DEFAULT_API)
    p.add_argument("--require-token", action="store_true", help="require an API token on loopback too (e.g. behind a reverse proxy)")
    p.add_argument("--api-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="another Host name the API answers to (a reverse proxy's public name); repeatable")
    p.add_argument("--keep-days", type=int, metavar="N",
                   help="delete readings older than N days (hourly); default: the config file's, else keep all")
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the UDP and HTTP ports with other receivers on this machine (SO_REUSEPORT; use a postgresql:// --db)",
    )
    from mpseal_host.modem_receiver import add_modem_arguments

    add_modem_arguments(p)  # --modem, --baud, --pdu, --no-sms-acks
    add_mqtt_arguments(p)
    from mpseal_host.ota import add_arguments as add_ota_arguments

    add_ota_arguments(p)  # --releases
    p.set_defaults(func=cmd_receive)

    devices = _action_group(subparsers, "devices", "the device registry: add, list, remove")
    a = _db_action(devices, "add", "register a device (a key is generated and printed once unless --key)", cmd_devices_add)
    a.add_argument("name")
    from mpseal_host.commands.packets import add_key_options

    add_key_options(a, "(default: generate one and print it once)")
    a.add_argument("--epoch", type=int, default=0, help="key epoch (default 0)")
    a.add_argument("--id", type=int, help="device id (default: the next free one)")
    a.add_argument("--ttn-id", metavar="TTN_DEVICE_ID", help="its end device id on The Things Network (what `mpseal ttn` maps uplinks by)")
    a = _db_action(devices, "set-ttn-id", "map a device to its end device id on The Things Network ('none' removes it)", cmd_devices_set_ttn_id)
    a.add_argument("name")
    a.add_argument("ttn_id", metavar="TTN_DEVICE_ID")
    a = _db_action(devices, "list", "list devices with last seen and counters", cmd_devices_list)
    a.add_argument("--json", action="store_true")
    a = _db_action(devices, "remove", "delete a device, its keys and readings (asks first)", cmd_devices_remove)
    a.add_argument("name")
    a.add_argument("--yes", action="store_true", help="do not ask (scripts)")

    p = subparsers.add_parser("prune", help="delete readings older than N days (asks first)")
    add_db_option(p)
    p.add_argument("--keep-days", type=int, required=True, metavar="N")
    p.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    p.set_defaults(func=cmd_prune)

    p = subparsers.add_parser("stats", help="packets stored, duplicates and rejections by reason")
    add_db_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser("command", help="queue a downlink command; it rides on the device's next ack")
    add_db_option(p)
    p.add_argument("device")
    p.add_argument("action", choices=("read-now", "set-interval", "reboot"))
    p.add_argument("seconds", nargs="?", type=int, help="for set-interval")
    p.set_defaults(func=cmd_command)

    tokens = _action_group(subparsers, "token", "API tokens: new, list, revoke (needed when the API is exposed)")
    a = _db_action(tokens, "new", "create a token; it is printed once and stored hashed", cmd_token_new)
    a.add_argument("name")
    a.add_argument("--scope", choices=("read", "admin"), default="read", help="read: GET only (default); admin: everything")
    _db_action(tokens, "list", "names, scopes and dates of the tokens (never the tokens)", cmd_token_list)
    a = _db_action(tokens, "revoke", "delete a token; it stops working within 2 s", cmd_token_revoke)
    a.add_argument("name")

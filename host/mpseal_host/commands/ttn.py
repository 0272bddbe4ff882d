"""ttn: ingest uplinks from The Things Network (The Things Stack v3) by MQTT
or webhook into the receiver's database, and `ttn ack-now`. See docs/lorawan.md."""
import logging
import os

from mpseal_host.commands.options import add_db_option, open_db
from mpseal_host.errors import UserError

SECRET_ENV = "MPSEAL_TTN_WEBHOOK_SECRET"
API_KEY_ENV = "MPSEAL_TTN_API_KEY"


def _mqtt_address(args):
    host, _, port = (args.mqtt or "").rpartition(":")
    if not host or not port.isdigit():
        raise UserError("--mqtt wants HOST:PORT, like eu1.cloud.thethings.network:8883")
    if not args.application:
        raise UserError("--mqtt needs --application (the TTN application id)")
    return host, int(port)


def cmd_ttn_ack_now(args):
    """One cumulative ack (with the commands that fit DR0) for DEVICE, pushed
    to TTN now; it reaches the board in RX1 after its next uplink."""
    from mpseal_host import ttn, ttn_service
    from mpseal_host.ingest import Ingestor

    host, port = _mqtt_address(args)
    storage = open_db(args)
    try:
        device = storage.get_device(args.name)
        if device is None:
            raise UserError("no device %r (see 'mpseal devices list')" % args.name)
        if device.ttn_id is None:
            raise UserError("device %r has no TTN device id (mpseal devices set-ttn-id %s TTN_DEVICE_ID)" % (args.name, args.name))
        packet = ttn.TtnIngest(Ingestor(storage)).cumulative_ack(device.id)
        if packet is None:
            raise UserError("no cumulative ack for %r: its host sequence numbers are used up (re-provision it)" % args.name)
    finally:
        storage.close()
    key = os.environ.get(API_KEY_ENV)
    username = "%s@%s" % (args.application, args.tenant) if key else None
    try:
        ttn_service.push_once(host, port, args.application, args.tenant, device.ttn_id, packet, username, key, args.tls)
    except OSError as exc:
        raise UserError("the cumulative ack was sealed (host seq used) but not pushed: %s" % exc)
    print("cumulative ack for %s (TTN device %s, host seq %d) pushed: the board gets it after its next uplink"
          % (device.name, device.ttn_id, int.from_bytes(packet[7:11], "big")))
    return 0


def cmd_ttn(args):
    from mpseal_host import ttn, ttn_service
    from mpseal_host.ingest import Ingestor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.mqtt and not args.webhook:
        raise UserError("give --mqtt HOST:PORT (TTN's MQTT integration) or --webhook PORT (TTN's webhook integration)")
    storage = open_db(args)  # must exist: the receiver's database, with the devices registered
    core = ttn.TtnIngest(Ingestor(storage), ttn.AckPolicy(args.ack_every, args.ack_after, args.max_downlinks_per_day))

    show = ttn_service.ResultPrinter()
    if args.mqtt:
        host, port = _mqtt_address(args)
        username = "%s@%s" % (args.application, args.tenant) if os.environ.get(API_KEY_ENV) else None
        backfill = None
        if args.storage_api:
            if not os.environ.get(API_KEY_ENV):
                raise UserError("--storage-api needs the API key in $%s" % API_KEY_ENV)
            backfill = (args.storage_api, os.environ[API_KEY_ENV])
        bridge = ttn_service.MqttBridge(core, host, int(port), args.application, args.tenant, username, os.environ.get(API_KEY_ENV), args.tls, show, backfill)
        if backfill:
            bridge.last_received_at = ttn.backfill_start(storage)  # the time we were not running, too
        bridge.start()
        if not bridge.connected.wait(30):
            bridge.stop()
            raise UserError("no connection to the MQTT broker %s within 30 s (check the address, --tls, and %s)" % (args.mqtt, API_KEY_ENV))
        print("mpseal ttn: subscribed to %s on %s, database %s" % (ttn.up_topic(args.application, args.tenant), args.mqtt, storage.path), flush=True)
        try:
            import time

            while True:  # paho's thread does the work (and reconnects)
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            bridge.stop()
            storage.close()
        return 0
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise UserError("set %s to the secret the TTN webhook sends in its %s header" % (SECRET_ENV, ttn_service.SECRET_HEADER))
    from aiohttp import web

    print("mpseal ttn: webhook on http://%s:%d%s, database %s" % (args.bind, args.webhook, ttn_service.WEBHOOK_PATH, storage.path), flush=True)
    try:
        web.run_app(ttn_service.webhook_app(core, secret, show), host=args.bind, port=args.webhook, print=None)
    except OSError as exc:
        raise UserError("cannot listen on port %d: %s" % (args.webhook, exc))
    finally:
        storage.close()
    return 0


def register(subparsers):
    p = subparsers.add_parser("ttn", help="ingest uplinks from The Things Network (MQTT or webhook); acks go back as downlinks")
    add_db_option(p)
    p.add_argument("--mqtt", metavar="HOST:PORT", help="TTN MQTT server, e.g. eu1.cloud.thethings.network:8883 (API key in $%s)" % API_KEY_ENV)
    p.add_argument("--tls", action="store_true", help="MQTT over TLS (port 8883 on TTN)")
    p.add_argument("--application", help="TTN application id")
    p.add_argument("--storage-api", metavar="URL", help="after each MQTT reconnect, fetch the uplinks missed from TTN's Storage Integration here, e.g. https://eu1.cloud.thethings.network")
    p.add_argument("--tenant", default="ttn", help="TTS tenant (default ttn, The Things Network)")
    p.add_argument("--webhook", type=int, metavar="PORT", help="serve TTN's webhook integration on this port (secret in $%s)" % SECRET_ENV)
    p.add_argument("--bind", default="127.0.0.1", help="webhook address (default 127.0.0.1; put a TLS proxy in front)")
    from mpseal_host import ttn

    p.add_argument("--ack-every", type=int, default=ttn.ACK_EVERY_S, metavar="SECONDS", help="a cumulative ack at least this often per device while it sends (default %d)" % ttn.ACK_EVERY_S)
    p.add_argument("--ack-after", type=int, default=ttn.ACK_AFTER_READINGS, metavar="N", help="a cumulative ack after N new readings of a device (default %d; keep it below 64)" % ttn.ACK_AFTER_READINGS)
    p.add_argument("--max-downlinks-per-day", type=int, default=ttn.MAX_DOWNLINKS_PER_DAY, metavar="N", help="never more downlinks per device in 24 h, commands included (TTN fair use: %d)" % ttn.MAX_DOWNLINKS_PER_DAY)
    p.set_defaults(func=cmd_ttn)
    actions = p.add_subparsers(dest="ttn_command", metavar="ACTION")
    a = actions.add_parser("ack-now", help="push one cumulative ack (and the commands that fit) to a device now")
    add_db_option(a)
    a.add_argument("name", help="the mpseal device (its TTN device id comes from the registry)")
    a.add_argument("--mqtt", metavar="HOST:PORT", required=True, help="TTN MQTT server (API key in $%s)" % API_KEY_ENV)
    a.add_argument("--tls", action="store_true", help="MQTT over TLS")
    a.add_argument("--application", required=True, help="TTN application id")
    a.add_argument("--tenant", default="ttn", help="TTS tenant (default ttn)")
    a.set_defaults(func=cmd_ttn_ack_now)

"""ttn: ingest uplinks from The Things Network (The Things Stack v3) by MQTT
or webhook into the receiver's database. See docs/lorawan.md."""
import logging
import os

from mpseal_host.commands.options import add_db_option, open_db
from mpseal_host.errors import UserError

SECRET_ENV = "MPSEAL_TTN_WEBHOOK_SECRET"
API_KEY_ENV = "MPSEAL_TTN_API_KEY"


def _device_map(storage, pairs):
    if not pairs:
        return None
    devices = {}
    for pair in pairs:
        ttn_id, sep, name = pair.partition("=")
        if not sep or not ttn_id or not name:
            raise UserError("--device wants TTN_DEVICE_ID=MPSEAL_NAME, got %r" % pair)
        device = storage.get_device(name)
        if device is None:
            raise UserError("no device %r (see 'mpseal devices list')" % name)
        devices[ttn_id] = device.id
    return devices


def cmd_ttn(args):
    from mpseal_host import ttn, ttn_service
    from mpseal_host.ingest import Ingestor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.mqtt and not args.webhook:
        raise UserError("give --mqtt HOST:PORT (TTN's MQTT integration) or --webhook PORT (TTN's webhook integration)")
    storage = open_db(args)  # must exist: the receiver's database, with the devices registered
    core = ttn.TtnIngest(Ingestor(storage), _device_map(storage, args.device), ttn.AckSchedule(args.plain_ack_every))

    show = ttn_service.ResultPrinter()
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise UserError("--mqtt wants HOST:PORT, like eu1.cloud.thethings.network:8883")
        if not args.application:
            raise UserError("--mqtt needs --application (the TTN application id)")
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
    p.add_argument("--device", action="append", metavar="TTN_ID=NAME", help="accept this TTN device only as this mpseal device (repeatable)")
    p.add_argument("--plain-ack-every", type=int, default=4 * 3600, metavar="SECONDS", help="plain acks at most this often per device (TTN fair use: ~10 downlinks a day); acks with commands go at once")
    p.set_defaults(func=cmd_ttn)

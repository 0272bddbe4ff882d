"""`mpseal configure [NAME]`: change a provisioned board's Wi-Fi and receiver
address, keeping its key, id, epoch and sequence numbers.

Reads /config.json from the board, replaces the `wifi` and `receiver`
sections with the secrets file's (plus --receiver-host / --udp-port /
--http-port / --wifi-ssid), checks the whole file (board_config), writes it
back atomically over the same connection and soft-resets the board. Nothing
in the receiver's database changes: the device keeps its key, so its packets
are accepted as before. The key is never printed; passwords neither.
"""
import json

from mpseal_host.errors import MpsealError
from mpseal_tools.board.connection import BoardError
from mpseal_tools.board_config import check_config
from mpseal_tools.provision import CONFIG_PATH

CHANGEABLE = ("wifi", "receiver")


class NotProvisioned(MpsealError):
    """The board's /config.json is missing, unreadable or another device's."""


def new_config(config, secrets, receiver_host=None, udp_port=None, http_port=None, wifi_ssid=None):
    """The board's config with Wi-Fi and receiver from `secrets` and the
    overrides; every other key (key, device_id, epoch, sensors...) as it was."""
    wifi = secrets.get("wifi") or {}
    receiver = secrets.get("receiver") or {}
    updated = dict(config)
    updated["wifi"] = {"ssid": wifi_ssid or wifi.get("ssid") or (config.get("wifi") or {}).get("ssid"),
                       "password": str(wifi.get("password") or "")}
    old = config.get("receiver") or {}
    updated["receiver"] = {
        "host": receiver_host or receiver.get("host") or old.get("host"),
        "udp_port": udp_port or receiver.get("udp_port") or old.get("udp_port", 4740),
        "http_port": http_port or receiver.get("http_port") or old.get("http_port", 8740),
    }
    return check_config(updated)


def changes(before, after):
    """Lines saying what changed, without secrets."""
    lines = []
    for section in CHANGEABLE:
        old, new = before.get(section) or {}, after.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                shown = "(changed)" if key == "password" else "%r -> %r" % (old.get(key), new.get(key))
                lines.append("%s.%s %s" % (section, key, shown))
    return lines


def configure(connect, secrets, name=None, **overrides):
    """Rewrites the board's Wi-Fi and receiver sections; returns (before,
    after) configs. connect() -> a board connection (docs/deploy.md)."""
    with connect() as board:
        try:
            raw = board.get_file(CONFIG_PATH)
        except BoardError:
            raise NotProvisioned("the board has no readable %s: provision it first (mpseal provision NAME)" % CONFIG_PATH)
        try:
            before = json.loads(raw)
        except ValueError:
            raise NotProvisioned("the board's %s is not valid JSON: provision it again (mpseal provision NAME --force)"
                            % CONFIG_PATH)
        if not isinstance(before, dict) or "key" not in before:
            raise NotProvisioned("the board's %s holds no device key: provision it first (mpseal provision NAME)" % CONFIG_PATH)
        if name is not None and before.get("name") != name:
            raise NotProvisioned("the board is provisioned as %r, not %r: check the port, or run configure %s"
                            % (before.get("name"), name, before.get("name")))
        after = new_config(before, secrets, **overrides)
        if after != before:
            board.put_file(CONFIG_PATH, json.dumps(after, sort_keys=True).encode())
            board.soft_reset()  # boot.py joins the new Wi-Fi
    return before, after


def cli(args):
    from mpseal_tools.provision import load_secrets, open_target

    secrets = load_secrets(args.secrets)
    before, after = configure(lambda: open_target(args.port, args.host, secrets, args.board), secrets, args.name,
                              receiver_host=args.receiver_host, udp_port=args.udp_port, http_port=args.http_port,
                              wifi_ssid=args.wifi_ssid)
    lines = changes(before, after)
    device = "%r (device %s)" % (after.get("name"), after.get("device_id"))
    if not lines:
        print("mpseal: %s already has these settings; nothing written" % device)
    else:
        print("mpseal: configured %s, key unchanged: %s" % (device, "; ".join(lines)))
    return 0

"""sms-ingest (gammu-smsd's RunOnReceive hook) and sms-numbers (which phone
numbers a device may send from). See docs/sms.md."""
import argparse
import os
import subprocess
import sys
import time

from mpseal_host.errors import UserError
from mpseal_host.pipeline import DUPLICATE, STORED
from mpseal_host.sms_ingest import SmsIngest, normalize_number, summary, taken, text_from_packet
from mpseal_host.commands.options import add_db_option, open_db
from mpseal_host.storage import StorageError

EXIT_REFUSED = 1  # the SMS was refused (and counted): gammu logs "Process failed"
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: the database could not take it; the SMS file stays in gammu's inbox
INJECT_TIMEOUT_S = 30


def gammu_message(environ):
    """(sender, text) from gammu-smsd's RunOnReceive environment. Several
    SMS_<n>_* sets are the parts of one multipart message (gammu-smsd-run(7)),
    joined here; a packet never needs more than one part, so the pipeline
    refuses the joined text as oversize."""
    try:
        count = int(environ["SMS_MESSAGES"])
    except (KeyError, ValueError):
        raise UserError("SMS_MESSAGES is not set: run 'mpseal sms-ingest' from gammu-smsd's RunOnReceive (docs/sms.md)")
    if count < 1:
        raise UserError("SMS_MESSAGES is %d: no message to ingest" % count)
    sender = environ.get("SMS_1_NUMBER", "")
    text = "".join(environ.get("SMS_%d_TEXT" % i, "") for i in range(1, count + 1))
    return sender, text


def _log(path, line):
    # gammu-smsd closes our stdout and stderr; a log file is how an operator sees us.
    if path:
        with open(path, "a") as f:
            f.write("%s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), line))
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError, AttributeError):
        pass


def inject_reply(config, number, packet):
    """Queues an SMS through gammu-smsd's outbox (gammu-smsd-inject)."""
    result = subprocess.run(
        ["gammu-smsd-inject", "-c", config, "TEXT", number, "-text", text_from_packet(packet)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=INJECT_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise OSError("gammu-smsd-inject exited %d: %s" % (result.returncode, result.stderr.decode(errors="replace").strip()[-200:]))


def cmd_sms_ingest(args):
    sender, text = gammu_message(os.environ)
    try:
        storage = open_db(args)
    except (StorageError, UserError) as exc:  # gammu keeps the SMS and runs the hook again later
        _log(args.log, "mpseal sms-ingest: %s" % exc)
        return EXIT_TEMPFAIL
    try:
        outcome, ack = SmsIngest(storage).ingest([(sender, text)])[0]
    finally:
        storage.close()
    _log(args.log, "mpseal sms-ingest: SMS from %s: %s" % (normalize_number(sender), summary(outcome)))
    if not taken(outcome):
        return EXIT_TEMPFAIL
    if outcome.status not in (STORED, DUPLICATE):
        return EXIT_REFUSED
    if ack is not None and args.reply_config:
        try:
            inject_reply(args.reply_config, normalize_number(sender), ack)
        except (OSError, subprocess.SubprocessError) as exc:
            # stored all the same: the board sends again, we ack the duplicate
            _log(args.log, "mpseal sms-ingest: ack not queued: %s" % exc)
    return 0


def cmd_sms_numbers(args):
    storage = open_db(args)
    try:
        device = storage.get_device(args.device)
        if device is None:
            raise UserError("no device %r (see 'mpseal devices list')" % args.device)
        if args.any or args.numbers:
            numbers = [] if args.any else [normalize_number(n) for n in args.numbers]
            bad = [n for n in numbers if not n.startswith("+") or len(n) < 8]
            if bad:
                raise UserError("give numbers in international form like +4915112345678, not %s" % ", ".join(bad))
            storage.set_allowed_numbers(args.device, numbers)
            device = storage.get_device(args.device)
    finally:
        storage.close()
    numbers = list(device.allowed_numbers)
    if numbers:
        print("%s accepts SMS only from: %s" % (device.name, ", ".join(numbers)))
    else:
        print("%s accepts SMS from any number (bind it with 'mpseal sms-numbers %s +49...')" % (device.name, device.name))


def register(subparsers):
    p = subparsers.add_parser(
        "sms-ingest",
        help="store the SMS gammu-smsd just received (RunOnReceive hook; reads SMS_MESSAGES, SMS_1_NUMBER, SMS_1_TEXT)",
    )
    p.add_argument("--db", default=None, help="receiver database (default as every command finds it: $MPSEAL_DB, mpseal.toml, "
                   "the data directory; give an absolute path: gammu-smsd's working folder is not yours)")
    p.add_argument("--reply-config", metavar="SMSDRC", help="gammu-smsd config file: send the sealed ack back by SMS through gammu-smsd-inject")
    p.add_argument("--log", metavar="FILE", help="append one line per SMS here (gammu-smsd closes stdout and stderr)")
    # gammu-smsd appends the ids of the received messages (inbox file names);
    # the environment carries the message itself, so they are accepted and ignored.
    p.add_argument("ids", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sms_ingest)

    p = subparsers.add_parser("sms-numbers", help="show or set the phone numbers a device may send SMS from")
    add_db_option(p)
    p.add_argument("device", help="device name")
    p.add_argument("numbers", nargs="*", help="international numbers like +4915112345678 (none: show)")
    p.add_argument("--any", action="store_true", help="accept SMS from any number (only the packet's seal counts)")
    p.set_defaults(func=cmd_sms_numbers)


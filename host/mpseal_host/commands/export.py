"""export: one device's readings over a time range as CSV or JSON Lines."""
import sys

from mpseal_host.commands.options import add_db_option, open_db
from mpseal_host.errors import UserError


def cmd_export(args):
    from mpseal_host.integrations import export
    from mpseal_host.integrations.timerange import BadTime, parse_time
    from mpseal_host.storage import NoSuchDevice

    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except BadTime as exc:
        raise UserError("%s (e.g. --from 2026-12-01T08:00:00Z or --from 1795312247)" % exc)
    if start is not None and end is not None and end < start:
        raise UserError("--to is before --from")
    storage = open_db(args)
    try:
        if storage.get_device(args.device) is None:
            raise UserError("no device %r (see 'mpseal devices list')" % args.device)
        out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
        try:
            for chunk in export.chunks(storage, args.device, args.format, start, end):
                out.write(chunk)
        except NoSuchDevice:
            raise UserError("device %r was removed during the export" % args.device)
        except OSError as exc:
            raise UserError("cannot write %s: %s" % (args.output or "stdout", exc))
        finally:
            if args.output:
                out.close()
    finally:
        storage.close()


def register(subparsers):
    p = subparsers.add_parser("export", help="a device's readings over a time range as CSV or JSON Lines")
    add_db_option(p)
    p.add_argument("--device", required=True, help="device name")
    p.add_argument("--from", dest="start", metavar="TIME", help="ISO 8601 (no offset = UTC) or Unix seconds; arrival time, inclusive")
    p.add_argument("--to", dest="end", metavar="TIME", help="ISO 8601 or Unix seconds; exclusive (default: now)")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_export)

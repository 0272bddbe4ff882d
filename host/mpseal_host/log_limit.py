"""One rate limit for every per-request log line of a long-running receiver.

A receiver exposed to a network must not let anyone fill its disk: a flood
of bad Content-Types, malformed HTTP (aiohttp logs a traceback per request),
rejected packets, or accept() failing at FD exhaustion (asyncio logs each)
would each write a line per event. RequestLogLimit is a logging.Filter
installed on every logger that writes per-request events (PER_REQUEST_LOGGERS):
at most `per_second` of their lines pass per second, tracebacks are cut to
one line (a malformed request is the sender's mistake, not ours), and once a
second in which lines were dropped has passed, one summary line says how many
and from where. Counters stay exact elsewhere (`/api/stats`); only the log is
bounded.

Thread-safe: the writer thread logs rejections, the event loop the rest.
"""
import logging
import threading
import time

# Loggers that write one line per request, packet or accepted connection.
PER_REQUEST_LOGGERS = (
    "mpseal.requests",  # our own: refused HTTP bodies, rejected packets, refused connections
    "aiohttp.access",
    "aiohttp.server",  # "Error handling request" + traceback per malformed request
    "aiohttp.web",
    "aiohttp.internal",
    "asyncio",  # accept() errors (EMFILE) via the loop's exception handler
)
LINES_PER_SECOND = 20

log = logging.getLogger("mpseal.requests")


class RequestLogLimit(logging.Filter):
    def __init__(self, per_second=LINES_PER_SECOND, clock=time.monotonic, summary_logger=None):
        super().__init__()
        self.per_second = per_second
        self.clock = clock
        self.summary_logger = summary_logger or logging.getLogger("mpseal.receiver")
        self.lock = threading.Lock()
        self.window_start = clock()
        self.lines = 0
        self.suppressed = {}  # logger name -> lines dropped in this window
        self.total_suppressed = 0

    def _roll(self, now):
        """Starts a new one-second window; returns the summary of the old one."""
        summary = None
        if self.suppressed:
            parts = ", ".join("%s %d" % item for item in sorted(self.suppressed.items(), key=lambda item: -item[1]))
            summary = "%d log lines suppressed in the last %.0f s (%s); counters in /api/stats stay exact" % (
                sum(self.suppressed.values()), max(1.0, now - self.window_start), parts)
        self.window_start, self.lines, self.suppressed = now, 0, {}
        return summary

    def filter(self, record):
        if getattr(record, "_mpseal_summary", False):
            return True
        now = self.clock()
        with self.lock:
            summary = self._roll(now) if now - self.window_start >= 1.0 else None
            allowed = self.lines < self.per_second
            if allowed:
                self.lines += 1
            else:
                self.suppressed[record.name] = self.suppressed.get(record.name, 0) + 1
                self.total_suppressed += 1
        if summary:
            self._summary(summary)
        if allowed and record.exc_info:
            # One line, not a traceback: "Error handling request: BadStatusLine(...)".
            exc = record.exc_info[1]
            record.msg = "%s: %s" % (record.getMessage(), exc.__class__.__name__ + (": %s" % exc if str(exc) else ""))
            record.args = None
            record.exc_info = record.exc_text = record.stack_info = None
        return allowed

    def flush(self):
        """Emits the summary of a finished window even when no new line
        arrives (the receiver calls this once a second)."""
        with self.lock:
            summary = self._roll(self.clock()) if self.clock() - self.window_start >= 1.0 else None
        if summary:
            self._summary(summary)

    def _summary(self, text):
        self.summary_logger.warning(text, extra={"_mpseal_summary": True})


def install(limit=None):
    """Puts one RequestLogLimit on every per-request logger; returns it."""
    limit = limit or RequestLogLimit()
    for name in PER_REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RequestLogLimit)]:
            logger.removeFilter(old)
        logger.addFilter(limit)
    return limit


def uninstall(limit):
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).removeFilter(limit)

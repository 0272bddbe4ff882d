"""`mpseal deploy`: make a board's files equal build/<board>/manifest.json.

Steps (the same over mpremote, ampy or WebREPL, see board_connection.py):
1. hash every manifest path on the board in one round trip;
2. refuse early when the changed files cannot fit in the free flash;
3. send only files whose sha256 differs (or that are missing);
4. hash the sent files again: a file that does not match is an error;
5. with clean=True, remove code files (.py/.mpy) that the manifest does not
   list; data the board owns (config.json, counters) is never removed;
6. soft reset, so boot.py and main.py run the new code.
A build with a ROMFS image (manifest "romfs", romfs.py) goes to a board whose
MicroPython has a ROMFS partition as that image (mpremote's romfs deploy, over
USB serial), and the /lib files it covers are not sent (with clean=True, old
copies are removed); any other board gets the /lib files.
"""
import os
import sys
import time

from mpseal_tools.board.connection import BoardError

CODE_SUFFIXES = (".py", ".mpy")  # what --clean may remove; everything else is the board's data


class DeployReport:
    def __init__(self):
        self.sent, self.unchanged, self.removed = [], [], []
        self.bytes_sent = 0
        self.seconds = 0.0

    def summary(self):
        return ("%d sent (%d bytes), %d unchanged, %d removed in %.2f s"
                % (len(self.sent), self.bytes_sent, len(self.unchanged), len(self.removed), self.seconds))


class Progress:
    """Progress on stderr: a redrawn line on a terminal, plain lines otherwise."""

    def __init__(self, enabled=True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()

    def step(self, text):
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def bytes_callback(self, label):
        def callback(done, total):
            if self.tty:  # per-chunk updates only where they redraw in place
                self.step("%s %d/%d bytes" % (label, done, total))
        return callback

    def done(self, text):
        """The summary: printed even with --no-progress."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()


def _romfs_deploy(board, build_dir, rom, progress):
    """Writes the ROMFS image when the board has a ROMFS partition (True),
    else False: the /lib files are sent instead."""
    from mpseal_tools import romfs

    if not romfs.board_has_romfs(board):
        return False
    transport = getattr(board, "transport", None)  # mpremote's, for its romfs deploy steps
    if transport is None:
        raise BoardError("%s has a ROMFS partition, which only the USB serial connection (mpremote) can write: "
                         "deploy over --port" % board.description)
    progress.step("writing the ROMFS image (%d bytes)" % rom["size"])
    try:
        romfs.deploy(transport, os.path.join(build_dir, rom["path"]))
    except romfs.RomfsError as exc:
        raise BoardError("%s: %s" % (board.description, exc))
    return True


def deploy(board, build_dir, manifest, clean=False, progress=None, reset=True):
    progress = progress or Progress(enabled=False)
    report = DeployReport()
    started = time.monotonic()
    files = manifest["files"]
    rom = manifest.get("romfs")
    if rom and _romfs_deploy(board, build_dir, rom, progress):
        files = [f for f in files if f["path"] not in rom["covers"]]
    progress.step("comparing %d files with %s" % (len(files), board.description))
    on_board = board.hashes([f["path"] for f in files])
    changed = [f for f in files if on_board.get(f["path"]) != f["sha256"]]
    report.unchanged = [f["path"] for f in files if f not in changed]

    if changed:
        # A lower bound: bytes of files the board does not have yet (replaced files
        # free their old blocks; littlefs keeps small files inline). Refuse only a
        # certain misfit; anything closer is caught by the write itself (ENOSPC).
        needed = sum(f["size"] for f in changed if on_board.get(f["path"]) is None)
        free = board.free_bytes()
        if needed > free:
            raise BoardError("the flash of %s is full: the build needs at least %d more bytes but %d are free; "
                             "remove files (deploy --clean) or make the build smaller" % (board.description, needed, free))
        for folder in sorted({f["path"].rsplit("/", 1)[0] for f in changed} - {""}):
            board.mkdir(folder)
    for index, f in enumerate(changed):
        label = "[%d/%d] %s" % (index + 1, len(changed), f["path"])
        progress.step("%s (%d bytes)" % (label, f["size"]))
        with open(os.path.join(build_dir, f["path"].lstrip("/")), "rb") as src:
            data = src.read()
        board.put_file(f["path"], data, progress.bytes_callback(label), make_parents=False)
        report.sent.append(f["path"])
        report.bytes_sent += len(data)

    if changed:
        after = board.hashes([f["path"] for f in changed])
        wrong = [f["path"] for f in changed if after.get(f["path"]) != f["sha256"]]
        if wrong:
            raise BoardError("%s holds different bytes than sent for %s: the transfer was corrupted; "
                             "run the deploy again" % (board.description, ", ".join(wrong)))

    if clean:
        wanted = {f["path"] for f in files}
        for entry in board.ls("/", recursive=True):
            if not entry.is_dir and entry.path.endswith(CODE_SUFFIXES) and entry.path not in wanted:
                progress.step("removing %s" % entry.path)
                board.remove(entry.path)
                report.removed.append(entry.path)

    if reset:
        progress.step("soft reset")
        board.soft_reset()
    report.seconds = time.monotonic() - started
    progress.done("deployed to %s: %s" % (board.description, report.summary()))
    return report

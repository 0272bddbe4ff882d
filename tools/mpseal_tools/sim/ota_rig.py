"""A signed-release rig for the OTA tests and bench: a release key, builds,
releases, a real `mpseal receive` serving them (--releases), and simulated
boards (the real firmware on the unix port, a folder as flash) installed from
a release as `mpseal deploy` would put it on a chip. Not modelled: the radio
(loopback), flash wear and timing, the ESP8266's speed."""
import hashlib
import os
import shutil
from pathlib import Path

from mpseal_tools.build import build
from mpseal_tools.paths import REPO_ROOT
from mpseal_tools.receiver_proc import ReceiverProcess
from mpseal_tools.release import make_release, new_key
from mpseal_tools import romfs
from mpseal_tools.sim import unix_board

REPO = Path(REPO_ROOT)
DEVICE = "dev"
DEVICE_ID = 7
BOARD = "wemos"
TRIAL_BOOTS = 3


def never_sends(src):
    """A release change (for OtaRig.release): its UDP transport sends
    nothing, so no reading of its trial is ever acked and the trial rolls
    back (TRIAL_BOOTS), leaving its readings queued for the version before."""
    path = src / "firmware" / "transport_udp.py"
    text = path.read_text()
    assert "    def send(self, packet):\n" in text
    path.write_text(text.replace("    def send(self, packet):\n", "    def send(self, packet):\n        return None  # release 2's bug\n"))


def state_line(phase, version, trial=0, boots=0, limit=0, floor=None):
    """/ota/state.txt as firmware/ota_state.py writes it (phase 0 = confirmed)."""
    return "ota-state-1 %d %d %d %d %d %d ota-state-1\n" % (phase, version, trial, boots, limit,
                                                            version if floor is None else floor)


def read_state(flash):
    try:
        parts = (Path(flash) / "ota" / "state.txt").read_text().split()
    except FileNotFoundError:
        return None
    return parts[1:7]


def read_counts(flash):
    try:
        text = (Path(flash) / "ota" / "counts.txt").read_text()
    except FileNotFoundError:
        return {}
    return {k: int(v) for k, v in (item.split(":") for item in text.split())}


def release_files(folder, rom=False):
    """{board path: sha256 hex} of a release folder's release.txt; rom=True:
    {/lib path: sha256 hex of its /rom compile} (the signed "rom" lines)."""
    files = {}
    path = None
    for line in (Path(folder) / "release.txt").read_text().splitlines():
        parts = line.split(" ")
        if parts[0] == "file":
            path = parts[3]
            if not rom:
                files[path] = parts[1]
        elif parts[0] == "rom" and rom:
            files[path] = parts[1]
    return files


class OtaRig:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.key_file = self.tmp / "release-key.pem"
        os.environ.pop("MPSEAL_RELEASE_KEY_PASSPHRASE", None)
        self.public = new_key(str(self.key_file))
        self.releases = self.tmp / "releases"
        self.device_key = os.urandom(32)
        self.receiver = ReceiverProcess(self.tmp / "rx", extra_args=["--releases", str(self.releases)])
        self.receiver.add_device(DEVICE, self.device_key, DEVICE_ID)
        self.releases.mkdir()
        self.builds = {}
        self.boards = []
        self.keys = {DEVICE: (DEVICE_ID, self.device_key)}  # device name -> (id, key)

    def add_device(self, name):
        """One more device in the receiver's registry, for board(device=name)."""
        device_id, key = DEVICE_ID + len(self.keys), os.urandom(32)
        self.receiver.add_device(name, key, device_id)
        self.keys[name] = (device_id, key)

    def build(self, name, change=None):
        """A --simulator build of the repository's board code, or of a copy
        changed by change(src folder). Cached by name."""
        if name not in self.builds:
            src = self.tmp / ("src-" + name)
            if change is None:
                src = REPO
            else:
                for part in ("firmware", "shared"):
                    shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
                change(src)
            out = self.tmp / ("build-" + name)
            manifest = build(BOARD, out_root=str(out), repo_root=str(src), simulator=True)
            self.builds[name] = (str(out / BOARD), manifest)
        return self.builds[name]

    def release(self, version, build_name="v1", change=None, board=BOARD):
        build_dir, manifest = self.build(build_name, change)
        folder, _ = make_release(build_dir, manifest, version, "1.%d.0" % version, str(self.releases), str(self.key_file),
                                 board=board)
        return Path(folder)

    def start(self):
        self.receiver.start()
        return self

    def board(self, factory_version=1, rom=False, device=DEVICE, **changes):
        """A board installed from release `factory_version` (its /lib, /boot.py,
        /main.py) with /ota/state.txt saying so. rom=True: a ROMFS board, its
        modules in the ROMFS image of that release's build (the "v1" build)
        instead of /lib, as `mpseal deploy` puts a wemos."""
        folder = self.releases / BOARD / str(factory_version)
        flash = self.tmp / ("flash%d" % len(self.boards))
        if rom:
            flash.mkdir(parents=True)
            shutil.copyfile(Path(self.build("v1")[0]) / "romfs.img", unix_board.romfs_image(flash))
        for path in release_files(folder):
            if rom and path.startswith("/lib/"):
                continue
            target = flash / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "files" / path.lstrip("/"), target)
        (flash / "ota").mkdir()
        (flash / "ota" / "state.txt").write_text(state_line(0, factory_version))
        config = {
            "device_id": self.keys[device][0],
            "key": self.keys[device][1].hex(),
            "receiver": {"host": "127.0.0.1", "udp_port": self.receiver.udp_port, "http_port": self.receiver.http_port},
            "transports": ["udp"],
            "interval_s": 0,
            "log": True,
            "ota": {"board": BOARD, "keys": [self.public.hex()], "trial_boots": TRIAL_BOOTS},
        }
        config.update(changes)
        unix_board.write_config(flash, config)
        (flash / "seq.dat").write_text("1 1\n")  # as provisioning writes it (a missing one means a lost one: resync)
        board = unix_board.Board(flash, log_path=self.tmp / ("board%d.log" % len(self.boards)))
        self.boards.append(board)
        return board

    def offer(self, version, board=BOARD):
        """`mpseal ota offer` as an operator runs it."""
        self.receiver.cli("ota", "offer", DEVICE, "--version", str(version), "--board", board,
                          "--releases", str(self.releases), "--url", self.receiver.ingest_url)

    def offer_command(self, version, board=BOARD):
        from mpseal_tools.commands.ota import offer_command

        return offer_command(str(self.releases), board, version, self.receiver.ingest_url)

    def queue(self, command):
        """Queues (opcode, argument) for the device, as `mpseal ota offer` does."""
        from mpseal_host.storage import Storage

        storage = Storage(str(self.receiver.db))
        try:
            storage.queue_command(DEVICE, command)
        finally:
            storage.close()

    def close(self):
        for board in self.boards:
            board.stop()
        self.receiver.stop()


DELTA = "rom-delta.txt"  # in /lib: fetched as a delta over the ROMFS image (firmware/ota_updater.py)


def lib_is_complete(flash, releases):
    """The board runs one whole release: the one /ota/state.txt names as
    running (the trial version in phase 2), byte for byte, and nothing else,
    resolved as MicroPython's importer finds modules:
    - a /lib with DELTA (ROMFS boards): /lib first, then /rom: each unit
      (top-level module or package) of /lib is the release's, whole; every
      other one is in the image with the bytes the release's "rom" lines
      sign, and the image has nothing else (a module the release lacks);
    - any other /lib with files: exactly the release's /lib (/rom, if any, is
      off sys.path);
    - an empty /lib on a ROMFS board: the image is the release's (rom lines).
    (/lib may also hold the signed release.txt / release.sig it came with.)"""
    state = read_state(flash)
    version = int(state[2] if state[0] == "2" else state[1])
    folder = Path(releases) / BOARD / str(version)
    want = {p: d for p, d in release_files(folder).items() if p.startswith("/lib/")}
    lib = Path(flash) / "lib"
    have = {"/" + str(p.relative_to(flash)): hashlib.sha256(p.read_bytes()).hexdigest() for p in lib.rglob("*")
            if p.is_file() and p.name not in ("release.txt", "release.sig", DELTA)}
    image = unix_board.romfs_image(flash)
    if not (lib / DELTA).exists() and (have or not image.exists()):
        return have == want
    rom = {"/lib" + p[4:]: d for p, d in romfs.image_files(unix_board.micropython_path(), image).items()}  # as the /lib path it stands for
    signed = release_files(folder, rom=True)

    def unit(path):
        return path[5:].split("/")[0].split(".")[0]

    from_lib = {unit(p) for p in have}
    if not set(have) <= set(want) or any(have[p] != want[p] for p in have):
        return False
    for p in want:
        if unit(p) in from_lib:
            if p not in have:
                return False
        elif p not in rom or rom[p] != signed.get(p):
            return False
    return all(unit(p) in from_lib or p in want for p in rom)


def lib_units(flash):
    """The units a delta /lib holds (its DELTA file), or None."""
    try:
        return (Path(flash) / "lib" / DELTA).read_text().split()
    except FileNotFoundError:
        return None


def numbers(board, word):
    return [int(line.split()[1]) for line in list(board.lines) if line.startswith(word + " ") and line.split()[1].isdigit()]

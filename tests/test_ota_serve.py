"""host/mpseal_host/ota.py: `mpseal receive --releases DIR` serves release
files with HTTP Range (a board resumes a file where it stopped), nothing
outside DIR, and a missing DIR is a one-line error."""
import http.client
import subprocess

import pytest

from conftest import BIN
from mpseal_tools.receiver_proc import ReceiverProcess


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "releases" / "wemos" / "3" / "files" / "lib"
    folder.mkdir(parents=True)
    (folder / "app.mpy").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "secret.txt").write_text("not for boards")
    rx = ReceiverProcess(tmp_path / "rx", extra_args=["--releases", str(tmp_path / "releases")]).start()
    yield rx
    rx.stop()


def _get(rx, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", rx.http_port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


def test_range_requests_resume_a_file(served):
    path = "/ota/wemos/3/files/lib/app.mpy"
    status, body, _ = _get(served, path)
    assert status == 200 and body == bytes(range(256)) * 4
    status, body, headers = _get(served, path, {"Range": "bytes=1000-"})
    assert status == 206 and body == (bytes(range(256)) * 4)[1000:]
    assert headers["Content-Range"] == "bytes 1000-1023/1024"
    status, _, _ = _get(served, path, {"Range": "bytes=1024-"})
    assert status == 416  # the board has it all (ota_updater.fetch treats this as done)


def test_nothing_outside_the_releases_folder(served):
    for path in ("/ota/../secret.txt", "/ota/%2e%2e/secret.txt", "/ota/", "/ota/wemos/"):
        status, body, _ = _get(served, path)
        assert status in (403, 404), (path, status)
        assert b"not for boards" not in body


def test_a_missing_releases_folder_is_one_line(tmp_path):
    result = subprocess.run([BIN + "/mpseal", "receive", "--db", str(tmp_path / "db.sqlite"), "--udp", "127.0.0.1:0",
                             "--http", "127.0.0.1:0", "--releases", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no such folder" in result.stderr and "Traceback" not in result.stderr


def test_releases_are_on_the_ingest_listener_only(served):
    """Boards reach the ingest listener; the API listener (loopback, tokens)
    serves no release file."""
    conn = http.client.HTTPConnection("127.0.0.1", served.api_port, timeout=10)
    try:
        conn.request("GET", "/ota/wemos/3/files/lib/app.mpy")
        response = conn.getresponse()
        assert response.status == 404 and response.read() != bytes(range(256)) * 4
    finally:
        conn.close()


def test_releases_without_the_ingest_listener_is_one_line(tmp_path):
    (tmp_path / "releases").mkdir()
    result = subprocess.run([BIN + "/mpseal", "receive", "--db", str(tmp_path / "db.sqlite"), "--udp", "127.0.0.1:0",
                             "--http", "off", "--api", "off", "--releases", str(tmp_path / "releases")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--releases is served on the HTTP ingest listener" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

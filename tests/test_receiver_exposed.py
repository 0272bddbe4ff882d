"""A receiver left running on a LAN (issue 18): exact HTTP bodies, the API
behind Host/Origin checks and tokens, bounded connections and logs, and a
database lock held elsewhere delaying only storage. Against a real
`mpseal receive` subprocess."""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import mpseal
from mpseal import payload
from conftest import BIN, wait_until
from mpseal_host.readers import READ_WORKERS
from mpseal_host.receiver import API_CONNECTIONS, INGEST_CONNECTIONS
from mpseal_host.storage import Storage, open_storage
from receiver_helpers import RunningReceiver

pytestmark = pytest.mark.slow
READING = payload.encode_values({"temperature": 21.5})
MPSEAL = os.path.join(BIN, "mpseal")


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "db.sqlite")


@pytest.fixture
def device(db):
    storage = Storage(db)
    device = storage.add_device("greenhouse")
    storage.close()
    return device


def new_token(db, name, scope="read"):
    out = subprocess.run([MPSEAL, "token", "new", name, "--scope", scope, "--db", db], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split(": ", 1)[1].split()[0]


def raw_http(address, data, pause_after=None, timeout=10):
    """Sends `data` (bytes, or a list of pieces sent as separate TCP segments
    with a pause between them), returns (status, headers dict, body)."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pieces = data if isinstance(data, list) else [data]
        for i, piece in enumerate(pieces):
            s.sendall(piece)
            if i < len(pieces) - 1:
                time.sleep(0.2)  # the stimulus: the body arrives in separate segments
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = s.recv(65536)
            if not chunk:
                break
            response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


def post_head(address, length=None, chunked=False, content_type="application/octet-stream"):
    head = "POST /api/ingest HTTP/1.1\r\nHost: %s:%d\r\n" % address
    if content_type:
        head += "Content-Type: %s\r\n" % content_type
    head += "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % length
    return (head + "Connection: close\r\n\r\n").encode()


def test_split_and_chunked_bodies_are_read_whole(db, device):
    receiver = RunningReceiver(db)
    try:
        first = mpseal.seal(device.master_key, device.id, 1, READING)
        status, headers, ack = raw_http(receiver.http, [post_head(receiver.http, len(first)) + first[:20], first[20:]])
        assert (status, headers["x-mpseal-status"]) == (200, "stored")
        assert mpseal.unseal(ack, device.master_key, direction=mpseal.TO_DEVICE)[0].seq == 1
        second = mpseal.seal(device.master_key, device.id, 2, READING)
        chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (second[:7], second[7:40], second[40:])] + [b"0\r\n\r\n"]
        status, headers, _ = raw_http(receiver.http, [post_head(receiver.http, chunked=True)] + chunks)
        assert (status, headers["x-mpseal-status"]) == (200, "stored")
        # a chunked body over the packet limit is refused as oversize, not read to its end
        status, _, body = raw_http(receiver.http, [post_head(receiver.http, chunked=True), b"400\r\n" + bytes(1024) + b"\r\n"])
        assert (status, json.loads(body)) == (413, {"error": "oversize"})
        # no Content-Type at all is refused like a wrong one (a no-cors fetch cannot reach the pipeline)
        status, _, body = raw_http(receiver.http, post_head(receiver.http, len(first), content_type=None) + first)
        assert (status, json.loads(body)["error"]) == (415, "bad_content_type")
        stats = receiver.get("/api/stats")[1]
        assert stats["stored"] == 2 and stats["rejected_by_reason"] == {"oversize": 1, "bad_content_type": 1}
    finally:
        assert receiver.stop()[0] == 0


def test_the_api_is_not_on_the_ingest_listener_and_refuses_rebinding(db, device):
    receiver = RunningReceiver(db)
    try:
        assert receiver.get("/api/devices")[0] == 200  # loopback API: no token needed
        status, _, _ = raw_http(receiver.http, b"GET /api/devices HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 404, "the ingest listener serves POST /api/ingest only"
        # DNS rebinding: evil.example resolving to 127.0.0.1 still sends Host: evil.example
        assert receiver.get("/api/devices", {"Host": "evil.example"}) == (421, {"error": "bad_host"})
        assert receiver.get("/api/devices", {"Host": "evil.example:%s" % receiver.base.split(":")[1]})[0] == 421
        assert receiver.get("/api/devices", {"Origin": "http://evil.example"}) == (403, {"error": "bad_origin"})
        assert receiver.get("/api/devices", {"Sec-Fetch-Site": "cross-site"})[0] == 403
        assert receiver.get("/api/devices", {"Origin": "http://" + receiver.base})[0] == 200
    finally:
        assert receiver.stop()[0] == 0


def test_an_exposed_api_needs_a_token(db, device):
    refused = subprocess.run([MPSEAL, "receive", "--db", db, "--udp", "off", "--http", "127.0.0.1:0", "--api", "0.0.0.0:0"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "mpseal token new" in refused.stderr
    reader, admin = new_token(db, "dashboard"), new_token(db, "ops", "admin")
    receiver = RunningReceiver(db, api="0.0.0.0:0")
    port = receiver.base.split(":")[1]
    receiver.url = "http://127.0.0.1:%s" % port
    try:
        assert receiver.get("/api/devices") == (401, {"error": "unauthorized"})
        assert receiver.get("/api/stats", {"Authorization": "Bearer mpseal_wrong"})[0] == 401
        assert receiver.get("/healthz")[0] == 401  # it names the database path
        status, body = receiver.get("/api/devices", {"Authorization": "Bearer " + reader})
        assert status == 200 and body["devices"][0]["name"] == "greenhouse"
        # read scope cannot change anything; admin can (no route changes state yet, so it reaches the router: 405)
        def post(token):
            request = urllib.request.Request(receiver.url + "/api/devices", data=b"{}", method="POST",
                                             headers={"Authorization": "Bearer " + token})
            try:
                return urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as exc:
                return exc.code
        assert (post(reader), post(admin)) == (403, 405)
        # the page: redirected to /login, which sets an HttpOnly SameSite cookie
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(receiver.url + "/", timeout=10)
            raise AssertionError("not redirected")
        except urllib.error.HTTPError as exc:
            assert exc.code == 303 and exc.headers["Location"] == "/login"
        form = urllib.parse.urlencode({"token": reader}).encode()
        login = urllib.request.Request(receiver.url + "/login", data=form, method="POST",
                                       headers={"Origin": receiver.url, "Content-Type": "application/x-www-form-urlencoded"})
        try:
            opener.open(login, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 303
            cookie = exc.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        session = cookie.split(";")[0]
        assert receiver.get("/api/devices", {"Cookie": session})[0] == 200
        # a login posted from another site (login CSRF) is refused
        forged = urllib.request.Request(receiver.url + "/login", data=form, method="POST", headers={"Origin": "http://evil.example"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(forged, timeout=10)
        assert exc.value.code == 403
        # revoked: refused within the token cache time
        assert subprocess.run([MPSEAL, "token", "revoke", "dashboard", "--db", db], capture_output=True, timeout=30).returncode == 0
        wait_until(lambda: receiver.get("/api/devices", {"Authorization": "Bearer " + reader})[0] == 401, 10, "revocation")
        tokens = subprocess.run([MPSEAL, "token", "list", "--db", db], capture_output=True, text=True, timeout=30).stdout
        assert "ops" in tokens and "admin" in tokens and admin not in tokens and "dashboard" not in tokens
    finally:
        assert receiver.stop()[0] == 0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # the common default; the receiver cannot raise it


def test_1100_idle_connections_do_not_stop_the_api_or_ingest(db, device):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * 1100 + 200
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    receiver = RunningReceiver(db, preexec_fn=_limit_fds)
    idle = []
    try:
        for i in range(1100):  # from 22 other loopback addresses, 50 each, to both HTTP listeners
            for address in (receiver.http, (receiver.base.split(":")[0], int(receiver.base.split(":")[1]))):
                s = socket.socket()
                s.bind(("127.0.0.%d" % (2 + i % 22), 0))
                s.setblocking(False)
                s.connect_ex(address)
                idle.append(s)
        # Every connection reaches the guard (a burst that overflowed the
        # kernel's accept queue used to vanish: half of them were never
        # seen), so all but what the listeners may hold are evicted.
        everyone_seen = len(idle) - INGEST_CONNECTIONS - API_CONNECTIONS
        wait_until(lambda: receiver.get("/api/stats")[1]["receiver"].get("connections_evicted_idle", 0) >= everyone_seen,
                   30, "evictions")
        assert receiver.get("/api/devices")[0] == 200
        packet = mpseal.seal(device.master_key, device.id, 1, READING)
        status, _, headers = receiver.post(packet)
        assert (status, headers["X-Mpseal-Status"]) == (200, "stored")
        assert receiver.udp_exchange(mpseal.seal(device.master_key, device.id, 2, READING)) is not None
        stats = receiver.get("/api/stats")[1]
        assert stats["stored"] == 2 and stats["receiver"]["accept_errors"] == 0
    finally:
        for s in idle:
            s.close()
        code, _, err = receiver.stop()
    assert code == 0, err[-2000:]
    assert len(err.splitlines()) < 60, "log not bounded: %d lines" % len(err.splitlines())


def test_log_output_stays_bounded_under_floods(db, device):
    receiver = RunningReceiver(db)
    started = time.monotonic()
    try:
        garbage = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(5000):  # rejected packets: one line each, unlimited
            garbage.sendto(os.urandom(64), receiver.udp)
        garbage.close()
        for _ in range(300):  # malformed HTTP: aiohttp logs a traceback per request
            try:
                raw_http(receiver.http, b"\x16\x03\x01 not http at all\r\n\r\n", timeout=5)
            except (ValueError, IndexError, OSError):
                pass
        conn = __import__("http.client").client.HTTPConnection(*receiver.http, timeout=10)
        for _ in range(1500):  # wrong Content-Type on one keep-alive connection
            conn.request("POST", "/api/ingest", body=b"x", headers={"Content-Type": "text/plain"})
            assert conn.getresponse().read() and True
        conn.close()
        for _ in range(300):  # a browser on wrong URLs of both listeners
            for base in (receiver.url, receiver.ingest_url):
                try:
                    urllib.request.urlopen(base + "/favicon.ico", timeout=5)
                except urllib.error.HTTPError:
                    pass
        wait_until(lambda: receiver.get("/api/stats")[1]["rejected"] >= 6500, 30, "every refusal counted")
        stats = receiver.get("/api/stats")[1]
    finally:
        code, _, err = receiver.stop()
    elapsed = time.monotonic() - started
    assert code == 0
    assert stats["rejected_by_reason"]["bad_content_type"] == 1500
    lines = err.splitlines()
    # 20 lines a second plus one summary a second, and start/stop lines
    assert len(lines) <= 21 * (elapsed + 2) + 10, "%d log lines in %.1f s" % (len(lines), elapsed)
    assert any("log lines suppressed" in line for line in lines)
    assert "Traceback" not in err
    assert device.master_key.hex() not in err


def _children(pid):
    """pid -> its start time, for each child of process `pid` (Linux /proc)."""
    found = {}
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            for child in f.read().split():
                found[int(child)] = _stat(int(child))[19]
    return found


def _stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()  # [0] state, [19] start time
    except (FileNotFoundError, ProcessLookupError):
        return None


def _running(pid, started):
    stat = _stat(pid)
    return stat is not None and stat[19] == started and stat[0] != "Z"


def test_read_pool_workers_die_with_a_sigkilled_receiver(db, device):
    receiver = RunningReceiver(db)
    try:
        assert receiver.get("/api/devices")[0] == 200  # answered by a read-pool worker
        # the read workers (and multiprocessing's resource tracker)
        children = wait_until(lambda: len(_children(receiver.proc.pid)) > READ_WORKERS and _children(receiver.proc.pid),
                              20, "the read-pool workers")
        os.kill(receiver.proc.pid, signal.SIGKILL)  # the receiver alone, not its process group
        receiver.proc.wait(timeout=10)
        wait_until(lambda: not any(_running(pid, started) for pid, started in children.items()), 20,
                   "the receiver's workers to exit")
    finally:
        receiver.stop()


# Another process holding the lock a batch needs, until a line on its stdin:
# SQLite's one write lock; on PostgreSQL the device's row (FOR UPDATE).
LOCKERS = {
    "sqlite": """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
""",
    "postgresql": """
import sys, psycopg
conn = psycopg.connect(sys.argv[1])  # a transaction: the row stays locked until the rollback
conn.execute("SELECT id FROM devices WHERE id = %s FOR UPDATE", (int(sys.argv[2]),)).fetchone()
print("locked", flush=True)
sys.stdin.readline()
conn.rollback()
""",
}
LOCK_S = 12.0  # held at least this long: past SQLite's usual 10 s busy timeout, which used to freeze the receiver


@pytest.fixture(params=sorted(LOCKERS))
def locked_db(request, tmp_path):
    """(backend, database location, device) on a fresh database of each backend."""
    if request.param == "sqlite":
        location = str(tmp_path / "db.sqlite")
    else:
        location = request.getfixturevalue("pg_cluster").create_database()
    storage = open_storage(location)
    device = storage.add_device("greenhouse")
    storage.close()
    return request.param, location, device


def test_a_lock_held_by_another_process_delays_only_storage(locked_db):
    """Both backends alike: while another process holds the lock, committed
    readings are re-acked at once, the API answers, the wait is one log line
    and lock_waits 1; once it is released, everything queued is stored and
    acked, nothing lost."""
    backend, db, device = locked_db
    receiver = RunningReceiver(db)
    key = device.master_key
    locker = None
    try:
        committed = mpseal.seal(key, device.id, 1, READING)
        first_ack = receiver.udp_exchange(committed, timeout=10)
        assert first_ack is not None
        locker = subprocess.Popen([sys.executable, "-c", LOCKERS[backend], db, str(device.id)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        waiting = [mpseal.seal(key, device.id, seq, READING) for seq in range(2, 12)]
        for packet in waiting:
            receiver.sock.sendto(packet, receiver.udp)
        wait_until(lambda: receiver.get("/healthz")[1]["storage_waiting_for_lock"], 30, "the writer to see the lock")
        # the loop keeps going: the committed reading is re-acked (the board
        # retrying until it gets one), the API answers
        assert wait_until(lambda: receiver.udp_exchange(committed, timeout=2), 30, "a re-ack while locked") == first_ack
        assert receiver.get("/api/devices")[0] == 200
        stats = receiver.get("/api/stats")[1]
        assert stats["stored"] == 1 and stats["receiver"]["lock_waits"] == 1
        time.sleep(max(0.0, LOCK_S - (time.monotonic() - locked_at)))  # the stimulus: a long lock
        locker.communicate("release\n", timeout=30)
        assert locker.returncode == 0
        # the board's next retries are answered once the queued batch is stored
        acked = wait_until(lambda: all(receiver.udp_exchange(p, timeout=1) is not None for p in waiting), 60, "acks after the lock")
        assert acked
        stats = receiver.get("/api/stats")[1]
        assert stats["stored"] == 11 and stats["rejected"] == 0
        assert stats["receiver"]["reacks_while_locked"] >= 1 and stats["receiver"]["lock_waits"] == 1
        assert receiver.get("/healthz")[1]["storage_waiting_for_lock"] is False
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.wait(30)
        code, _, err = receiver.stop()
    assert code == 0
    assert err.count("locked by another process") == 1, err
    assert "lock released after" in err
    storage = open_storage(db)
    assert [r["seq"] for r in storage.readings("greenhouse", limit=100)] == list(range(1, 12))
    storage.close()


def test_a_slow_metrics_query_does_not_delay_udp_acks(pg_cluster):
    """/metrics (like export and the MQTT publisher's status) queries in the
    read pool: while its query waits, the loop keeps storing and acking. The
    stimulus is a real lock on PostgreSQL that only that query needs (the
    commands table: the writer, its device states cached, does not read it
    for a device without commands), so the query waits as long as the test
    wants, and pg_stat_activity shows when it is waiting."""
    import threading

    import psycopg

    from mpseal_host.storage import open_storage

    url = pg_cluster.create_database()
    storage = open_storage(url)
    device = storage.add_device("greenhouse")
    storage.close()
    receiver = RunningReceiver(url)
    scrape = {}
    try:
        assert receiver.udp_exchange(mpseal.seal(device.master_key, device.id, 1, READING)) is not None
        with psycopg.connect(url) as locker, psycopg.connect(url, autocommit=True) as watcher:
            locker.execute("LOCK TABLE commands IN ACCESS EXCLUSIVE MODE")

            def waiting():
                return watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%commands%'"
                ).fetchone()[0]

            def get_metrics():
                scrape["result"] = receiver.get_raw("/metrics")

            scraper = threading.Thread(target=get_metrics, daemon=True)
            scraper.start()
            wait_until(waiting, 20, "the /metrics query waiting for the lock")
            ack = receiver.udp_exchange(mpseal.seal(device.master_key, device.id, 2, READING))
            assert ack is not None, "a /metrics query waiting on the database held up a UDP ack"
            assert waiting() and scraper.is_alive() and "result" not in scrape  # still waiting meanwhile
            locker.rollback()
        scraper.join(30)
        status, body, _ = scrape["result"]
        assert status == 200 and b'mpseal_device_last_seq{device="greenhouse"} 2.0' in body
    finally:
        assert receiver.stop()[0] == 0

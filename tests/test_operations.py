"""Running mpseal as a service: one database every command finds (--db,
$MPSEAL_DB, mpseal.toml, the data directory), a config file whose mistakes
are named, retention, and a systemd unit that systemd itself accepts."""
import os
import subprocess
import time

from conftest import mpseal_cli
from mpseal_host import retention, settings
from mpseal_host.storage import Storage


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPSEAL_", "XDG_"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))
    env.update(extra)
    return env


def cli(tmp_path, *args, cwd=None, **extra):
    return subprocess.run([os.path.join(os.path.dirname(os.path.dirname(__file__)), ".venv", "bin", "mpseal")]
                          + list(args), capture_output=True, env=env_for(tmp_path, **extra), cwd=cwd or tmp_path,
                          timeout=60)


def test_every_command_finds_the_same_database_from_any_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    added = cli(tmp_path, "devices", "add", "greenhouse")
    assert added.returncode == 0 and b"created a new receiver database" in added.stderr
    expected = tmp_path / "data" / "mpseal" / "mpseal.sqlite"
    assert expected.exists() and oct(expected.stat().st_mode & 0o777) == "0o600"
    listed = cli(tmp_path, "devices", "list", cwd=elsewhere)
    assert listed.returncode == 0 and b"greenhouse" in listed.stdout


def test_precedence_flag_env_config_default(tmp_path):
    config = tmp_path / "config" / "mpseal"
    config.mkdir(parents=True)
    (config / "mpseal.toml").write_text('db = "%s"\n' % (tmp_path / "from-config.sqlite"))
    env = env_for(tmp_path)
    assert settings.database_location(None, env, str(tmp_path))[0] == str(tmp_path / "from-config.sqlite")
    env["MPSEAL_DB"] = str(tmp_path / "from-env.sqlite")
    assert settings.database_location(None, env, str(tmp_path)) == (str(tmp_path / "from-env.sqlite"), "$MPSEAL_DB")
    assert settings.database_location("flag.sqlite", env, str(tmp_path)) == ("flag.sqlite", "--db")
    (tmp_path / "mpseal.toml").write_text('db = "here.sqlite"\n')  # ./mpseal.toml comes before ~/.config
    del env["MPSEAL_DB"]
    assert settings.database_location(None, env, str(tmp_path))[0] == "here.sqlite"


def test_config_mistakes_are_one_line_naming_the_key(tmp_path):
    (tmp_path / "mpseal.toml").write_text('[receive]\nudp = "0.0.0.0:4740"\nkeep_dayz = 3\n')
    result = cli(tmp_path, "stats")
    assert result.returncode == 1 and b"unknown key receive.keep_dayz" in result.stderr
    assert b"Traceback" not in result.stderr
    (tmp_path / "mpseal.toml").write_text('[receive]\nkeep_days = "ninety"\n')
    result = cli(tmp_path, "stats")
    assert result.returncode == 1 and b"receive.keep_days must be int" in result.stderr
    (tmp_path / "mpseal.toml").write_text('db = \n')
    result = cli(tmp_path, "stats")
    assert result.returncode == 1 and b"not valid TOML" in result.stderr
    result = cli(tmp_path, "stats", MPSEAL_CONFIG=str(tmp_path / "absent.toml"))
    assert result.returncode == 1 and b"absent.toml (from $MPSEAL_CONFIG) does not exist" in result.stderr


def ingest_at(storage, device, seq, received_at):
    """A real sealed reading through the receiver's ingest path, at a given arrival time."""
    import mpseal
    from mpseal import payload
    from mpseal_host.ingest import Ingestor

    packet = mpseal.seal(device.master_key, device.id, seq, payload.encode_values({"t": 20.5}))
    (outcome, _), = Ingestor(storage).ingest([(packet, "udp")], now=received_at)
    assert outcome.status == "stored", outcome.reason


def test_retention_deletes_only_old_readings_and_keeps_the_window(tmp_path):
    db = str(tmp_path / "r.sqlite")
    storage = Storage(db)
    device = storage.add_device("greenhouse")
    now = time.time()
    for seq, age_days in ((1, 40), (2, 31), (3, 29), (4, 0.5)):
        ingest_at(storage, device, seq, now - age_days * 86400)
    assert retention.prune(storage, 30, now) == 2
    assert [r["seq"] for r in storage.readings("greenhouse")] == [3, 4]
    import mpseal
    from mpseal_host.ingest import Ingestor

    replayed = mpseal.seal(device.master_key, device.id, 1, b"\x00")  # deleted, but its number stays used
    assert Ingestor(storage).ingest([(replayed, "udp")])[0][0].status != "stored"
    storage.close()
    refused = cli(tmp_path, "prune", "--keep-days", "1", "--db", db)  # no terminal to ask on
    assert refused.returncode == 1 and b"--yes" in refused.stderr
    done = cli(tmp_path, "prune", "--keep-days", "1", "--yes", "--db", db)
    assert done.returncode == 0 and b"deleted 1 readings" in done.stdout


def test_systemd_accepts_the_unit(tmp_path):
    result = cli(tmp_path, "install-service", "--db", str(tmp_path / "svc.sqlite"), "--", "--keep-days", "90")
    assert result.returncode == 0
    unit = tmp_path / "mpseal.service"
    unit.write_bytes(result.stdout)
    text = result.stdout.decode()
    assert "MPSEAL_DB=%s" % (tmp_path / "svc.sqlite") in text and "receive --keep-days 90" in text
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, timeout=60)
    problems = [line for line in verify.stderr.decode().splitlines() if "mpseal.service" in line]
    assert verify.returncode == 0 and not problems, verify.stderr.decode()
    written = cli(tmp_path, "install-service", "--user", "--write")
    assert written.returncode == 0
    assert (tmp_path / "config" / "systemd" / "user" / "mpseal.service").exists()


def test_provision_warns_when_boards_cannot_reach_the_receiver_host():
    from mpseal_host.addresses import local_addresses
    from mpseal_tools.provision import receiver_host_warning

    assert "cannot reach this machine's loopback" in receiver_host_warning("127.0.0.1")
    assert "not an address of this machine" in receiver_host_warning("203.0.113.77")  # TEST-NET-3: never anyone's
    ours = [address for _, address in local_addresses() if not address.startswith("127.")]
    if ours:  # a machine with a network interface (CI has one)
        assert receiver_host_warning(ours[0]) is None

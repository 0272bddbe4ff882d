"""The packet CLI as a human uses it: keygen | seal | unseal | inspect."""
import base64
import json

from conftest import mpseal_cli


def test_keygen_seal_unseal_inspect_round_trip():
    key = mpseal_cli("keygen").stdout.decode().strip()
    assert len(bytes.fromhex(key)) == 32
    for fmt in ("raw", "hex", "base64"):
        sealed = mpseal_cli("seal", "--key", key, "--device", "7", "--seq", "3", "--format", fmt, input=b"hello board")
        assert sealed.returncode == 0, sealed.stderr
        opened = mpseal_cli("unseal", "--key", key, "--format", fmt, input=sealed.stdout)
        assert opened.returncode == 0, opened.stderr
        assert opened.stdout == b"hello board"
        info = json.loads(mpseal_cli("inspect", "--format", fmt, input=sealed.stdout).stdout)
        assert info["device_id"] == 7 and info["seq"] == 3 and info["type"] == "reading"


def test_seal_values_and_decode():
    key = "11" * 32
    sealed = mpseal_cli("seal", "--key", key, "--device", "1", "--seq", "1", "--values", "--format", "base64",
                        input=b'{"temperature": 21.37, "humidity": 45.2, "battery": 3.712}')
    assert len(sealed.stdout.strip()) == 80
    opened = mpseal_cli("unseal", "--key", key, "--format", "base64", "--decode", input=sealed.stdout)
    assert json.loads(opened.stdout)["payload"] == {"temperature": 21.37, "humidity": 45.2, "battery": 3.712}


def test_unseal_failure_exits_1_with_reason():
    key = "22" * 32
    sealed = mpseal_cli("seal", "--key", key, "--device", "1", "--seq", "1", "--format", "hex", input=b"x").stdout
    raw = bytearray(bytes.fromhex(sealed.decode()))
    raw[-1] ^= 1
    result = mpseal_cli("unseal", "--key", key, "--format", "base64", input=base64.b64encode(bytes(raw)))
    assert result.returncode == 1
    assert b"bad_tag" in result.stderr and result.stdout == b""


def test_bad_arguments_get_clear_errors():
    result = mpseal_cli("seal", "--key", "xyz", "--device", "1", "--seq", "1", input=b"x")
    assert result.returncode == 1 and result.stderr.startswith(b"mpseal: the key must be hexadecimal")
    result = mpseal_cli("seal", "--key", "00" * 32, "--device", "1", "--seq", "0", input=b"x")
    assert result.returncode == 1 and b"sequence number" in result.stderr
    result = mpseal_cli("unseal", "--key", "00" * 32, "--format", "hex", input=b"not hex")
    assert result.returncode == 1 and b"not valid hex" in result.stderr
    result = mpseal_cli("inspect", "--format", "hex", input=b"09")
    assert result.returncode == 1 and b"bad_version" in result.stderr


def test_seal_values_is_exact_or_refuses_in_one_line():
    key = "33" * 32
    for text, want in ((b'{"ratio": 0.004, "t": 7.125}', {"ratio": 0.004, "t": 7.125}), (b'{"temperature": 21.375}', {"temperature": 21.375})):
        sealed = mpseal_cli("seal", "--key", key, "--device", "1", "--seq", "1", "--values", input=text)
        opened = mpseal_cli("unseal", "--key", key, "--decode", input=sealed.stdout)
        assert json.loads(opened.stdout)["payload"] == want  # no silent rounding
    for bad in (b"[1,2]", b'{"a":"x"}', b'{"a":null}', b'{"a":1e400}', b'{"a":0.1234567891}', b'{"a":true}', b"{"):
        result = mpseal_cli("seal", "--key", key, "--device", "1", "--seq", "1", "--values", input=bad)
        err = result.stderr.decode()
        assert result.returncode == 1 and err.startswith("mpseal: --values") and err.count("\n") == 1, (bad, err)
        assert "Traceback" not in err and result.stdout == b""


def test_unseal_decode_follows_the_message_type():
    from mpseal import control

    key = "44" * 32
    cases = [
        ("ack", "5", control.encode_ack(9, [control.set_interval(60), control.rotate_key(3, bytes(32)), control.reboot()]),
         {"acked_seq": 9, "commands": [{"command": "set-interval", "seconds": 60}, {"command": "rotate-key", "epoch": 3}, {"command": "reboot"}]}),
        ("command", "6", control.encode_commands([control.read_now()]), {"commands": [{"command": "read-now"}]}),
        ("resync", "0", control.encode_resync(bytes(range(16)), 1200, 7), {"nonce": bytes(range(16)).hex(), "device_seq": 1200, "host_seq": 7}),
    ]
    for kind, seq, body, want in cases:
        sealed = mpseal_cli("seal", "--key", key, "--device", "1", "--seq", seq, "--type", kind, input=body)
        assert sealed.returncode == 0, sealed.stderr
        opened = mpseal_cli("unseal", "--key", key, "--to-device", "--decode", input=sealed.stdout)
        assert opened.returncode == 0, opened.stderr
        out = json.loads(opened.stdout)
        assert out["header"]["type"] == kind and out["payload"] == want
        assert bytes(32).hex() not in opened.stdout.decode()  # a rotate-key's new key is never printed
    request = mpseal_cli("seal", "--key", key, "--device", "1", "--seq", "0", "--type", "resync-request",
                         input=control.encode_resync_request(bytes(16), 2))
    out = json.loads(mpseal_cli("unseal", "--key", key, "--decode", input=request.stdout).stdout)
    assert out["payload"] == {"nonce": bytes(16).hex(), "reason": "seq_store_unreadable"}

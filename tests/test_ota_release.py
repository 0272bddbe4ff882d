"""mpseal release-key / release (tools/mpseal_tools/release.py): the key file,
the signed manifest, versions that only grow. The signature is checked with
the board's own verifier (firmware/ecdsa_p256.py) and with `cryptography`."""
import hashlib
import json
import os
import stat
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "firmware"))
import ecdsa_p256  # noqa: E402  (board module, importable on CPython)

sys.path.pop(0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mpseal_tools.build import build

    out = tmp_path_factory.mktemp("build")
    build("wemos", out_root=str(out))
    return str(out)


@pytest.fixture
def env(tmp_path, monkeypatch):
    key = tmp_path / "keys" / "release.pem"
    monkeypatch.setenv("MPSEAL_RELEASE_KEY", str(key))
    monkeypatch.delenv("MPSEAL_RELEASE_KEY_PASSPHRASE", raising=False)
    return {"key": key, "releases": tmp_path / "releases", "environ": dict(os.environ, MPSEAL_RELEASE_KEY=str(key))}


def _cli(env, *args):
    import subprocess

    return subprocess.run([os.path.join(REPO, ".venv", "bin", "mpseal")] + list(args), capture_output=True, text=True,
                          env=env["environ"], timeout=60)


def test_key_file_is_private_and_never_overwritten(env):
    first = _cli(env, "release-key", "new")
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(env["key"]).st_mode) == 0o600
    public = first.stdout.strip().splitlines()[-1]
    assert len(public) == 130 and public.startswith("04")
    assert "PRIVATE" not in first.stdout
    before = env["key"].read_bytes()
    again = _cli(env, "release-key", "new")
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert env["key"].read_bytes() == before
    shown = _cli(env, "release-key", "show")
    assert shown.stdout.strip().splitlines()[-1] == public
    os.chmod(env["key"], 0o644)
    loose = _cli(env, "release-key", "show")
    assert loose.returncode != 0 and "chmod 600" in loose.stderr


def test_release_is_signed_and_complete(env, built):
    public = bytes.fromhex(_cli(env, "release-key", "new").stdout.strip().splitlines()[-1])
    made = _cli(env, "release", "--version", "3", "--name", "1.3.0", "--out", built, "--releases", str(env["releases"]))
    assert made.returncode == 0, made.stderr
    folder = env["releases"] / "wemos" / "3"
    text = (folder / "release.txt").read_bytes()
    assert hashlib.sha256(text).hexdigest() in made.stdout
    lines = text.decode().splitlines()
    assert lines[:4] == ["mpseal-release 1", "board wemos", "version 3", "name 1.3.0"]
    manifest = json.loads(open(os.path.join(built, "wemos", "manifest.json")).read())
    files = [line for line in lines[4:] if line.startswith("file ")]
    assert len(files) == len(manifest["files"])
    for line in files:
        _, digest, size, path = line.split(" ")
        data = (folder / "files" / path.lstrip("/")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest and len(data) == int(size)
    # A ROMFS board (wemos): right after each /lib file, its /rom compile as
    # the image holds it (docs/ota.md "ROMFS boards"), checked here with the
    # board's own VfsRom reader
    from mpseal_tools import romfs
    from mpseal_tools.sim.unix_board import micropython_path

    image = romfs.image_files(micropython_path(), os.path.join(built, "wemos", romfs.IMAGE))
    roms = [(lines[i - 1], line) for i, line in enumerate(lines) if line.startswith("rom ")]
    assert len(roms) == len([f for f in files if f.split(" ")[3].startswith("/lib/")]) == len(image)
    for before, line in roms:
        path = before.split(" ")[3]
        _, digest, size = line.split(" ")
        assert before.startswith("file ") and path.startswith("/lib/") and image["/rom" + path[4:]] == digest
        assert digest != before.split(" ")[1]  # the same module, another source name (__file__): other bytes
    kid, sig = (folder / "release.sig").read_text().split()
    assert kid == hashlib.sha256(public[1:]).hexdigest()[:16]
    signature = bytes.fromhex(sig)
    assert ecdsa_p256.verify(ecdsa_p256.public_key(public), signature, text)
    assert not ecdsa_p256.verify(ecdsa_p256.public_key(public), signature, text.replace(b"version 3", b"version 4"))

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    key.verify(encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")), text,
               ec.ECDSA(hashes.SHA256()))


def test_versions_only_grow_and_bad_input_is_one_line(env, built):
    _cli(env, "release-key", "new")
    args = ("--out", built, "--releases", str(env["releases"]))
    assert _cli(env, "release", "--version", "5", "--name", "a", *args).returncode == 0
    for version, name, expect in (("5", "b", "not above"), ("4", "b", "not above"), ("0", "b", "integer 1.."),
                                  ("6", "has space", "release name")):
        result = _cli(env, "release", "--version", version, "--name", name, *args)
        assert result.returncode != 0 and expect in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(os.listdir(env["releases"] / "wemos")) == ["5"]  # nothing half-made


def test_build_changed_after_manifest_is_refused(env, built, tmp_path):
    import shutil

    _cli(env, "release-key", "new")
    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    with open(copy / "wemos" / "lib" / "app.mpy", "ab") as f:
        f.write(b"\0")
    result = _cli(env, "release", "--version", "1", "--name", "x", "--out", str(copy), "--releases", str(env["releases"]))
    assert result.returncode != 0 and "changed since the build" in result.stderr


def test_missing_key_says_what_to_do(env, built):
    result = _cli(env, "release", "--version", "1", "--name", "x", "--out", built, "--releases", str(env["releases"]))
    assert result.returncode != 0 and "release-key new" in result.stderr


def test_a_build_without_romfs_gets_no_rom_lines_and_a_changed_image_is_refused(env, built, tmp_path):
    from mpseal_tools.build import build
    from mpseal_tools.release import ReleaseError, make_release, new_key

    new_key(str(env["key"]))
    esp01 = tmp_path / "esp01-build"
    manifest = build("esp01", out_root=str(esp01))
    folder, _ = make_release(str(esp01 / "esp01"), manifest, 1, "1.0.0", str(env["releases"]))
    assert not [l for l in open(os.path.join(folder, "release.txt")) if l.startswith("rom ")]
    wemos = json.loads(open(os.path.join(built, "wemos", "manifest.json")).read())
    image = os.path.join(built, "wemos", "romfs.img")
    original = open(image, "rb").read()
    try:
        with open(image, "ab") as f:
            f.write(b"\0")
        with pytest.raises(ReleaseError, match="romfs.img changed since the build"):
            make_release(os.path.join(built, "wemos"), wemos, 9, "1.9.0", str(env["releases"]))
    finally:
        with open(image, "wb") as f:
            f.write(original)

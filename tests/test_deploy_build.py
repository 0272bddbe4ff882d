"""`mpseal build`: what lands in build/<board>/, the manifest, and build errors."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from mpseal_tools.build import BuildError
from mpseal_tools.build import build, board_files
from vboard_helpers import MPSEAL, REPO


def test_build_compiles_board_code_and_describes_it_in_the_manifest(tmp_path):
    result = subprocess.run([MPSEAL, "build", "--board", "wemos", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[1/" in result.stderr and "built " in result.stderr  # progress, then a summary
    out = tmp_path / "wemos"
    manifest = json.loads((out / "manifest.json").read_text())
    paths = [f["path"] for f in manifest["files"]]
    modules = [n[:-3] for n in os.listdir(os.path.join(REPO, "shared", "mpseal")) if n.endswith(".py")]
    for name in modules:
        if name in ("aes_openssl", "aes_pycryptodome"):  # CPython-only: never on a board
            assert "/lib/mpseal/%s.mpy" % name not in paths
        else:
            assert "/lib/mpseal/%s.mpy" % name in paths
    for entry in manifest["files"]:
        data = (out / entry["path"].lstrip("/")).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        if entry["path"].endswith(".mpy"):
            assert data[:2] == b"M\x06"  # mpy version 6, what MicroPython 1.2x loads
    if os.path.exists(os.path.join(REPO, "firmware", "main.py")):
        assert "/main.py" in paths and "/boot.py" in paths
        assert (out / "main.py").read_bytes() == open(os.path.join(REPO, "firmware", "main.py"), "rb").read()
    # the chip gets its own side of the hardware seam only
    assert "/lib/hw_esp8266.mpy" in paths and not any(p.startswith("/lib/hw_unix") for p in paths)
    assert manifest["simulator"] is False


def test_simulator_build_adds_the_unix_seam_for_the_virtual_board(tmp_path):
    manifest = build("wemos", out_root=str(tmp_path), simulator=True)
    paths = [f["path"] for f in manifest["files"]]
    assert "/lib/hw_unix.mpy" in paths and "/lib/hw_esp8266.mpy" in paths


def fake_repo(tmp_path, bad_source):
    root = tmp_path / "repo"
    shutil.copytree(os.path.join(REPO, "shared", "mpseal"), root / "shared" / "mpseal")
    (root / "firmware").mkdir()
    (root / "firmware" / "main.py").write_text("import app\n")
    (root / "firmware" / "app.py").write_text(bad_source)
    return str(root)


def test_unsupported_syntax_fails_with_file_and_line_and_keeps_the_previous_build(tmp_path):
    root = fake_repo(tmp_path, "x = 1\n")
    build("wemos", repo_root=root)
    before = (tmp_path / "repo" / "build" / "wemos" / "manifest.json").read_text()
    (tmp_path / "repo" / "firmware" / "app.py").write_text("x = 1\n\ndef f(v):\n    match v:\n        case 1:\n            pass\n")
    with pytest.raises(BuildError, match=r"firmware/app\.py:4: SyntaxError"):
        build("wemos", repo_root=root)
    assert (tmp_path / "repo" / "build" / "wemos" / "manifest.json").read_text() == before


def test_layout_puts_the_package_under_lib_and_boot_main_at_the_root(tmp_path):
    targets = dict((os.path.basename(src), dst) for src, dst in board_files(fake_repo(tmp_path, "y = 2\n")))
    assert targets["main.py"] == "/main.py"
    assert targets["app.py"] == "/lib/app.mpy"
    assert targets["packet.py"] == "/lib/mpseal/packet.mpy"
    assert "aes_pycryptodome.py" not in targets and "aes_openssl.py" not in targets

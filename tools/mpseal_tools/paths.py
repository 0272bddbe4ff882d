"""Where the repository's non-Python parts live: the one owner of that fact.

Tools need the firmware sources, the protocol package's files (they go to a
board), boards.yaml and the MicroPython programs in tools/mp/. They are found
relative to this file, whose place in the tree is fixed: tools/mpseal_tools/.
"""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE_DIR = os.path.join(REPO_ROOT, "firmware")
SHARED_DIR = os.path.join(REPO_ROOT, "shared")  # holds the mpseal package
MPSEAL_DIR = os.path.join(SHARED_DIR, "mpseal")
BOARDS_FILE = os.path.join(REPO_ROOT, "boards.yaml")
MICROPYTHON_PROGRAMS = os.path.join(REPO_ROOT, "tools", "mp")  # run by the unix port, never imported by CPython
BOARD_API_DATA = os.path.join(REPO_ROOT, "tools", "board_api_check")
BUILD_DIR = os.path.join(REPO_ROOT, "build")


def micropython_program(name):
    """Path of a MicroPython program in tools/mp/ (e.g. "vboard_agent.py")."""
    return os.path.join(MICROPYTHON_PROGRAMS, name)

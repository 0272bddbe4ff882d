"""Which transport a board is reached by: the factory over connection.py's
serial classes and webrepl.py's WebREPL class. It lives outside both, so the
base module never imports a transport built on it."""
import os

from mpseal_tools.board.catalog import find_port, get_board
from mpseal_tools.board.connection import AmpyConnection, BoardError, MpremoteConnection
from mpseal_tools.board.webrepl import WebReplConnection

TOOLS = {"mpremote": MpremoteConnection, "ampy": AmpyConnection}


def resolve_port(port, board_name=None):
    """The given port, or the only connected board whose USB VID:PID is in boards.yaml."""
    if port:
        if not port.startswith(("/dev/", "COM")) or os.path.exists(port) or port.startswith("COM"):
            return port
        raise BoardError("%s does not exist: is the board plugged in? (ls /dev/ttyUSB* /dev/ttyACM*)" % port)
    return find_port(get_board(board_name) if board_name else None)


def open_board(port=None, tool="mpremote", host=None, password=None, board_name=None):
    if host:
        return WebReplConnection(host, password)
    if tool not in TOOLS:
        raise BoardError("unknown tool %r: use one of %s" % (tool, ", ".join(TOOLS)))
    return TOOLS[tool](resolve_port(port, board_name))

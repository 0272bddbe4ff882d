"""One table of rejection reasons (mpseal_host.rejections): the protocol's
catalog, the receiver's own reasons and the board's copies all agree with it."""
import ast
import os

from conftest import REPO
from mpseal import errors
from mpseal_host import rejections


def board_constant(path, name):
    """A tuple constant from a board module, read without importing it (it is MicroPython code)."""
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("%s defines no %s" % (path, name))


def test_every_protocol_reason_is_in_the_table():
    catalog = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}
    assert catalog and catalog <= set(rejections.REASONS), sorted(catalog - set(rejections.REASONS))


def test_board_drops_exactly_the_final_reasons():
    # A board that drops a packet for a reason that can change loses a reading;
    # one that keeps a finally refused packet blocks its queue behind it.
    final_on_board = board_constant("firmware/transport_http.py", "FINAL_REJECTIONS")
    assert final_on_board == set(rejections.FINAL)


def test_reasons_named_in_host_code_are_in_the_table():
    import re

    named = set()
    folder = os.path.join(REPO, "host", "mpseal_host")
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                source = open(os.path.join(root, name)).read()
                named |= set(re.findall(r'InvalidPacket\("([a-z_]+)"', source))
                named |= set(re.findall(r'count_rejection\([^,]+, "([a-z_]+)"', source))
    assert named <= set(rejections.REASONS), sorted(named - set(rejections.REASONS))


def test_statuses_are_client_or_server_errors():
    for reason in rejections.REASONS.values():
        assert 400 <= reason.http_status < 600, reason.name
        assert reason.meaning

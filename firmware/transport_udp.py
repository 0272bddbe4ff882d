# UDP to the receiver: one packet per datagram, the reply datagram is the
# sealed ack (docs/design.md). A lost datagram or ack is retried with a
# doubling wait; after the last attempt send() returns None and the app keeps
# the packet in the flash queue for the next cycle.
# While it waits, every datagram goes to `handle` (the app sets it to
# Downlink.handle): one from another address (as None) or one that is not
# the awaited reply is skipped and counted there, and the wait goes on (a
# fresh timeout per datagram, at most _REPLIES of them), so junk in front of
# the ack cannot make the board miss it.
# `why` says why send() got no ack (the app prints it when the link's state
# changes: docs/firmware.md "Console").
import select
import socket
from micropython import const

import hw

_ATTEMPTS = const(3)
_FIRST_ACK_TIMEOUT_MS = const(300)  # then 600, 1200: backoff doubles, 2.1 s in all
_MAX_REPLY = const(256)  # mpseal_host.pipeline.MAX_ACK_SIZE: a bigger buffer is a bigger block to find in a full heap
_REPLIES = const(8)  # datagrams looked at per attempt before sending again
_MAX_DRAIN = const(64)  # stale datagrams dropped before a send


class Transport:
    name = "udp"

    def __init__(self, config):
        self.host = config.host
        self.port = config.udp_port
        self.addr = None
        self.sock = None
        self.poller = None
        self.handle = None  # reply -> True if it is the awaited one (set by the app)
        self.why = None  # why the last send() got no reply (a console line, not a key)

    def send(self, packet):
        try:
            if self.sock is None:
                if self.addr is None:
                    self.addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0][-1]
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.poller = select.poll()
                self.poller.register(self.sock, select.POLLIN)
            sock = self.sock
            # Drop what queued up since the last send (late acks for earlier
            # attempts, junk): bounded, so a flood cannot hold the board here.
            for _ in range(_MAX_DRAIN):
                if not self.poller.poll(0):
                    break
                sock.recv(_MAX_REPLY)
            timeout_ms = _FIRST_ACK_TIMEOUT_MS
            for _ in range(_ATTEMPTS):
                self.idle()
                sock.sendto(packet, self.addr)
                # At most _REPLIES datagrams per attempt, each within its
                # timeout: a flood of junk cannot hold the board here.
                for _ in range(_REPLIES):
                    if not self.poller.poll(timeout_ms):
                        break
                    reply, addr = sock.recvfrom(_MAX_REPLY)
                    if self.handle is None or self.handle(reply if addr == self.addr else None):
                        return reply
                    self.idle()
                timeout_ms *= 2
            self.why = "no ack from %s:%d over UDP" % (self.host, self.port)
        except OSError as exc:  # no route, DNS failure, ICMP port unreachable: link trouble
            self.close()
            self.why = "no route to %s:%d (%s)" % (self.host, self.port, exc) if hw.online() else "no Wi-Fi connection"
        return None

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = self.poller = None

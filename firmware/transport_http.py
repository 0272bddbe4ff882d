# HTTP POST /api/ingest on a plain socket (no urequests on the unix port, and
# a socket keeps the heap use known). Body = packet bytes; 200 -> the body is
# the sealed ack; 4xx -> JSON {"error": reason}: the host refused the packet
# for good, and `rejected` holds the reason so the app can drop it (only for
# reasons that will never change for this packet; others are retried).
import json
import socket

import hw

FINAL_REJECTIONS = ("too_old", "seq_reused", "replay", "bad_payload", "bad_padding", "oversize", "bad_seq")
TIMEOUT_S = 5  # connect + response; TCP already retries underneath
MAX_RESPONSE = 2048
_HEAD = b"POST /api/ingest HTTP/1.0\r\nHost: %s:%d\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"


class Transport:
    name = "http"

    def __init__(self, config):
        self.host = config.host
        self.port = config.http_port
        self.addr = None
        self.rejected = None
        self.why = None  # why the last send() got no ack (app.py prints it when it changes)

    def send(self, packet):
        self.rejected = None
        sock = None
        try:
            if self.addr is None:
                self.addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
            self.idle()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(TIMEOUT_S)
            sock.connect(self.addr)
            sock.write(_HEAD % (self.host.encode(), self.port, len(packet)))
            sock.write(packet)
            status = sock.readline().split(None, 2)
            code = int(status[1]) if len(status) > 1 else 0
            length = -1
            while True:
                line = sock.readline()
                if not line or line == b"\r\n":
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = sock.read(length) if 0 <= length <= MAX_RESPONSE else sock.read(MAX_RESPONSE)
        except (OSError, ValueError, IndexError) as exc:  # link trouble or a garbled response
            self.why = "no route to %s:%d (%s)" % (self.host, self.port, exc) if hw.online() else "no Wi-Fi connection"
            return None
        finally:
            if sock is not None:
                sock.close()
        if code == 200:
            return body
        if 400 <= code < 500:
            try:
                reason = json.loads(body.decode()).get("error")
            except (ValueError, AttributeError):
                reason = None
            if reason in FINAL_REJECTIONS:
                self.rejected = reason
            self.why = "refused by the receiver: %s" % reason
        else:
            self.why = "no ack from %s:%d (HTTP %d)" % (self.host, self.port, code)
        return None

"""A real mosquitto (Debian's) on a free loopback port with its own config
file, and a subscriber that records what the broker delivers: for the MQTT /
Home Assistant tests."""
import os
import pwd
import shutil
import socket
import subprocess
import itertools
import threading

import paho.mqtt.client as paho

from conftest import wait_until
from mpseal_tools.processes import stop_process
from mpseal_tools.receiver_proc import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """Started by the test, stopped after; stop()/start() again on the same
    port is a broker outage. No persistence: a restart forgets retained
    messages, so whatever is retained after one was published again."""

    def __init__(self, folder, settings="allow_anonymous true\n"):
        if not os.access(MOSQUITTO, os.X_OK):
            raise AssertionError("no mosquitto at %s: run 'make system-deps'" % MOSQUITTO)
        self.port = free_port()
        self.config = os.path.join(folder, "mosquitto.conf")
        self.log = os.path.join(folder, "mosquitto.log")
        with open(self.config, "w") as f:
            # `user`: started as root, mosquitto would switch to user
            # mosquitto, who cannot read the test's private folder.
            f.write("listener %d 127.0.0.1\npersistence false\nlog_dest stderr\nuser %s\n%s"
                    % (self.port, pwd.getpwuid(os.getuid()).pw_name, settings))
        self.proc = None

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self):
        log = open(self.log, "a")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.config], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.proc.poll() is not None or self._accepts(), timeout=20, what="mosquitto listening")
        if self.proc.poll() is not None:
            raise AssertionError("mosquitto exited: %s" % open(self.log).read()[-2000:])
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None


_CLIENT_IDS = itertools.count(1)


class Subscriber:
    """paho-mqtt client in its own thread, subscribed to `topics`; keeps
    every message as (topic, payload bytes, retain) in arrival order."""

    def __init__(self, port, topics=("#",), ca_file=None, username=None, password=None):
        self.messages = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-subscriber-%d-%d" % (os.getpid(), next(_CLIENT_IDS)))
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        if ca_file:
            self.client.tls_set(ca_certs=ca_file)
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect("localhost" if ca_file else "127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("subscriber did not get its SUBACK")

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic):
        with self.lock:
            return [m for m in self.messages if m[0] == topic]

    def last(self, topic):
        found = self.on(topic)
        return found[-1][1] if found else None

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def wait_for_topic(subscriber, topic, predicate=lambda payload: True, timeout=30.0):
    def found():
        payload = subscriber.last(topic)
        return payload is not None and predicate(payload) and payload

    return wait_until(found, timeout=timeout, what="a matching message on %s" % topic)


def make_tls_files(folder):
    """A CA and a server certificate for localhost / 127.0.0.1 (cryptography,
    a dev dependency): ca.pem, server.pem, server.key in `folder`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def cert(subject, issuer, public_key, signing_key, ca, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mpseal test CA")])
    ca_cert = cert(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    server = cert(name, ca_name, key.public_key(), ca_key, False,
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    paths = {n: os.path.join(folder, n) for n in ("ca.pem", "server.pem", "server.key")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.pem"], "wb") as f:
        f.write(server.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return paths

"""A real mosquitto (Debian's) on a free loopback port with its own config
file, and a subscriber that records what the broker delivers: for the MQTT /
Home Assistant tests."""
import os
import shutil
import socket
import subprocess
import itertools
import threading

import paho.mqtt.client as paho

from conftest import wait_until
from mpseal_tools.receiver_proc import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """Started by the test, stopped after; stop()/start() again on the same
    port is a broker outage. No persistence: a restart forgets retained
    messages, so whatever is retained after one was published again."""

    def __init__(self, folder):
        if not os.access(MOSQUITTO, os.X_OK):
            raise AssertionError("no mosquitto at %s: run 'make system-deps'" % MOSQUITTO)
        self.port = free_port()
        self.config = os.path.join(folder, "mosquitto.conf")
        self.log = os.path.join(folder, "mosquitto.log")
        with open(self.config, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n" % self.port)
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_CLIENT_IDS = itertools.count(1)


class Subscriber:
    """paho-mqtt client in its own thread, subscribed to `topics`; keeps
    every message as (topic, payload bytes, retain) in arrival order."""

    def __init__(self, port, topics=("#",)):
        self.messages = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-subscriber-%d-%d" % (os.getpid(), next(_CLIENT_IDS)))
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
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

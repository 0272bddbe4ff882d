"""A gammu `dummy` phone folder joined to the simulated GSM network, so Debian's
real gammu-smsd sends and receives through it.

Does NOT model: gammu's other phone drivers, multipart backups (one message
per file, its concatenation header dropped), MMS, delivery reports, or the
SMSC gammu-smsd would use (what it sends is delivered at once).
"""
import configparser
import datetime
import os
import threading
import time


class GammuPhone:
    """A gammu `dummy` phone folder on the network. Incoming SMS become files
    in <folder>/sms/1 (the dummy driver's inbox, in gammu's SMS backup
    format, as `gammu savesms` writes them); SMS that gammu-smsd has sent
    (moved into its sent folder) are picked up and delivered."""

    def __init__(self, number, folder, network, sent_folder=None):
        self.number = number
        self.folder = folder
        self.network = network
        self.sent_folder = sent_folder
        self.sent_seen = set()
        self.lock = threading.Lock()
        for sub in ("sms/1", "sms/2", "sms/3", "sms/4", "sms/5"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        network.attach(number, self)
        self._thread = None
        self._running = False

    def receive_sms(self, message):
        sender, text = message.sender, message.text
        inbox = os.path.join(self.folder, "sms", "1")
        now = datetime.datetime.now(datetime.timezone.utc)
        with self.lock:
            taken = [int(n) for n in os.listdir(inbox) if n.isdigit()]
            location = max(taken, default=0) + 1
            content = (
                "[SMSBackup000]\n"
                "PDU = Deliver\n"
                "DateTime = %s\n"
                "State = UnRead\n"
                'Number = "%s"\n'
                "Text00 = %s\n"
                "Coding = Default_No_Compression\n"
                "Folder = 1\n"
                "Length = %d\n"
                "Class = -1\n"
            ) % (now.strftime("%Y%m%dT%H%M%SZ"), sender, text.encode("utf-16-be").hex().upper(), len(text))
            # written aside and renamed so gammu never reads half a file
            tmp = os.path.join(self.folder, ".incoming-%d" % location)
            with open(tmp, "w") as f:
                f.write(content)
            os.replace(tmp, os.path.join(inbox, str(location)))
        return True

    def start(self, poll_s=0.2):
        if not self.sent_folder:
            return
        self._running = True
        self._thread = threading.Thread(target=self._watch_sent, args=(poll_s,), daemon=True)
        self._thread.start()

    def stop(self):
        self._running = False
        if self._thread:
            self._thread.join(2)

    def _watch_sent(self, poll_s):
        while self._running:
            for name in sorted(os.listdir(self.sent_folder)):
                if name in self.sent_seen:
                    continue
                message = read_gammu_backup(os.path.join(self.sent_folder, name))
                if message:
                    self.sent_seen.add(name)
                    self.network.submit(self.number, message[0], message[1])
            time.sleep(poll_s)


def read_gammu_backup(path):
    """(number, text) of a one-message gammu SMS backup file, or None."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
        section = parser["SMSBackup000"]
        number = section.get("Number", "").strip('"')
        text = "".join(
            bytes.fromhex(section["Text%02d" % i]).decode("utf-16-be")
            for i in range(100)
            if "Text%02d" % i in section
        )
    except (configparser.Error, KeyError, ValueError, UnicodeError, OSError):
        return None  # not (yet) a complete backup file
    return number, text

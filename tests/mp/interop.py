# Interop half run under MicroPython:
#   interop.py seal KEYHEX N     -> N lines "hex(packet)" sealed here (random IVs from os.urandom)
#   interop.py open KEYHEX       -> reads hex packets from stdin, prints "seq hex(payload)" or "ERR reason"
import sys
from binascii import hexlify, unhexlify

import mpseal

mode, key = sys.argv[1], mpseal.DeviceKeys(unhexlify(sys.argv[2]))
if mode == "seal":
    from mpseal import payload

    for seq in range(1, int(sys.argv[3]) + 1):
        data = payload.encode_values({"temperature": 20 + seq / 100, "humidity": 50.5, "battery": 3.3})
        version = mpseal.VERSION_COMPACT if seq % 2 else mpseal.VERSION_STANDARD
        print(hexlify(mpseal.seal(key, 9, seq, data, version=version)).decode())
else:
    from mpseal import control

    window = mpseal.ReplayWindow()
    while True:  # line by line: a board-sized heap has no room for all of stdin
        line = sys.stdin.readline().strip()
        if not line:
            break
        try:
            header, data = mpseal.unseal(unhexlify(line), key, direction=mpseal.TO_DEVICE, window=window)
            window.update(header.seq)
            seq, commands = control.decode_ack(data)
            print(header.seq, seq, hexlify(control.encode_commands(commands)).decode())
        except mpseal.InvalidPacket as exc:
            print("ERR", exc.reason)

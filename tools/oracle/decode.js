// The independent LoRaWAN implementation the tests check mpseal's frames
// against (npm lora-packet, pinned in package.json; `make oracle`).
// One JSON request per stdin line, one JSON answer per stdout line:
//   {"op": "decode", "phy": hex, "nwk": hex, "app": hex, "fcnt": full 32-bit FCnt}
//     -> {"mtype", "dev_addr", "fcnt16", "fport", "mic_ok", "payload"}
//   {"op": "encode_down", "dev_addr": hex, "fcnt": n, "fport": n, "payload": hex, "nwk": hex, "app": hex}
//     -> {"phy": hex}
// lora-packet wants the upper 16 bits of a 32-bit FCnt as a 2-byte buffer in
// little-endian order (big-endian silently gives a wrong MIC).
const lora = require("lora-packet");
const readline = require("readline");

function msb(fcnt) {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(Math.floor(fcnt / 65536) & 0xffff);
  return b;
}

function handle(req) {
  const nwk = Buffer.from(req.nwk, "hex");
  const app = Buffer.from(req.app, "hex");
  if (req.op === "decode") {
    const p = lora.fromWire(Buffer.from(req.phy, "hex"));
    const payload = p.getFPort() === null ? null : lora.decrypt(p, app, nwk, msb(req.fcnt));
    return {
      mtype: p.getMType(),
      dev_addr: p.getBuffers().DevAddr.toString("hex"),
      fcnt16: p.getFCnt(),
      fport: p.getFPort(),
      mic_ok: lora.verifyMIC(p, nwk, undefined, msb(req.fcnt)),
      payload: payload === null ? null : payload.toString("hex"),
    };
  }
  if (req.op === "encode_down") {
    const p = lora.fromFields(
      {
        MType: "Unconfirmed Data Down",
        DevAddr: Buffer.from(req.dev_addr, "hex"),
        FCnt: req.fcnt & 0xffff,
        FPort: req.fport,
        payload: Buffer.from(req.payload, "hex"),
      },
      app, nwk, undefined, msb(req.fcnt)
    );
    return { phy: p.getPHYPayload().toString("hex") };
  }
  throw new Error("unknown op " + req.op);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let out;
  try {
    out = handle(JSON.parse(line));
  } catch (e) {
    out = { error: String(e.message || e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,                  -- the protocol's u32 device id
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    replay_window BLOB,                      -- mpseal.ReplayWindow.to_bytes()
    last_seq INTEGER NOT NULL DEFAULT 0,     -- highest device seq stored
    last_seen REAL,
    last_transport TEXT,
    host_seq INTEGER NOT NULL DEFAULT 0,     -- last host->device seq used
    allowed_numbers TEXT NOT NULL DEFAULT '[]',  -- JSON list; [] = any SMS sender
    received INTEGER NOT NULL DEFAULT 0,
    stored INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0
);
-- At most one 'current' and one 'pending' key per device: the host accepts
-- both until the first packet under the pending epoch promotes it.
CREATE TABLE IF NOT EXISTS device_keys (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL CHECK (epoch BETWEEN 0 AND 255),
    master_key BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('current', 'pending')),
    created_at REAL NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_key_per_state ON device_keys (device_id, state);
-- Keyed by (device, seq), no other index: each batch then dirties about one
-- leaf page per device, not three (rowid table + two indexes), which is what
-- a batch commit costs. A seq is stored once, whatever the replay window says.
CREATE TABLE IF NOT EXISTS readings (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    received_at REAL NOT NULL,
    transport TEXT NOT NULL,
    format INTEGER NOT NULL,
    payload BLOB NOT NULL,                   -- decrypted payload (mpseal.payload); decoded on read
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    device_id INTEGER NOT NULL,              -- NO_DEVICE (-1) when none is registered
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (device_id, reason)
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    opcode INTEGER NOT NULL,
    argument BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    sent_host_seq INTEGER,
    acked_device_seq INTEGER                 -- the device seq whose ack carried it
);
CREATE INDEX IF NOT EXISTS commands_unsent ON commands (device_id, sent_at);

# AES-CMAC (RFC 4493, = NIST SP 800-38B with AES-128) on the crypto seam's
# single-block ECB encryption, so it runs wherever mpseal runs: cryptolib on
# the ESP8266 and the unix port, pycryptodome on CPython. LoRaWAN 1.0.x's MIC
# is the first 4 bytes of AES-CMAC under the NwkSKey (firmware/lorawan.py).
# Only encryption is ever needed, which is all cryptolib's ECB mode must do.
from mpseal.aes import BLOCK_SIZE, cbc_encrypt, ecb_encrypt_block, prepare_key


def _double(block):
    # Multiply by x in GF(2^128) (RFC 4493 2.3, "generate subkey"): shift left
    # one bit, and xor 0x87 into the last byte when a bit fell off the top.
    out = bytearray(BLOCK_SIZE)
    carry = 0
    for i in range(BLOCK_SIZE - 1, -1, -1):
        b = block[i]
        out[i] = ((b << 1) | carry) & 0xFF
        carry = b >> 7
    if carry:
        out[BLOCK_SIZE - 1] ^= 0x87
    return out


def cmac(key, message):
    """The 16-byte AES-CMAC of `message` under the 16-byte `key` (raw bytes).
    The chaining is CBC-MAC (RFC 4493 2.4: X := AES(K, X xor M_i)), i.e. the
    last block of a CBC encryption from a zero IV, so it is done by one
    cbc_encrypt call: on the board two AES objects (cryptolib: ~320 bytes
    each) per MAC, not one per block (a LoRa board has little heap to spare)."""
    k = prepare_key(key)
    k1 = _double(ecb_encrypt_block(k, bytes(BLOCK_SIZE)))
    n = len(message)
    # The last block is whole (xor K1) or padded with 0x80 00.. (xor K2);
    # an empty message counts as one incomplete block.
    if n and n % BLOCK_SIZE == 0:
        start = n - BLOCK_SIZE
        data = bytearray(message)
        sub = k1
    else:
        start = n - n % BLOCK_SIZE
        data = bytearray(start + BLOCK_SIZE)
        data[:n] = message
        data[n] = 0x80
        sub = _double(k1)
    for i in range(BLOCK_SIZE):
        data[start + i] ^= sub[i]
    return bytes(cbc_encrypt(k, bytes(BLOCK_SIZE), data)[start:])

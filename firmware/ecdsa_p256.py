# ECDSA signature verification on NIST P-256 with SHA-256, in pure Python,
# for checking release signatures on the board (docs/ota.md). Written from the
# math: curve domain parameters from SEC 2 v2 section 2.4.2 (= FIPS 186-4
# D.1.2.3), verification from SEC 1 v2 section 4.1.4 / FIPS 186-4 6.4.2.
#
# Why P-256 and not Ed25519: the ESP8266 hashlib has sha256 but no sha512,
# which Ed25519 needs (a pure-Python SHA-512 makes it ~3x slower), and
# `cryptography` on the host signs P-256 as well.
#
# Only verification, so only public values are involved: no constant-time
# concerns. Points are Jacobian (X, Y, Z) tuples with x = X/Z^2, y = Y/Z^3
# (no inversion per step), None is the point at infinity. u1*G + u2*Q is one
# double-and-add pass over both scalars at once (Shamir's trick), adding the
# affine G, Q or G+Q, so a verify costs 256 doublings, ~192 mixed additions
# and three inversions.
#
# Board code (MicroPython and CPython): big integers are MicroPython's
# arbitrary-precision ints; no pow(a, b, m) (POW3 is optional in ports).
# No const(): it would need micropython (or mpseal's compat seam, whose
# import loads the whole package); the curve numbers are plain globals.
import hashlib

_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def _inverse(a, m):
    """a^-1 mod m (m prime, a not 0 mod m): extended Euclid."""
    a %= m
    if a == 0:
        raise ValueError("no inverse")
    x0, x1, low, high = 1, 0, a, m
    while low > 1:
        q = high // low
        x0, x1, low, high = x1 - q * x0, x0, high - q * low, low
    return x0 % m


def _double(point):
    # dbl-2001-b (a = -3), from the Explicit-Formulas Database
    if point is None:
        return None
    x, y, z = point
    if y == 0:
        return None
    p = _P
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return (x3, y3, z3)


def _add_affine(point, ax, ay):
    """point (Jacobian) + (ax, ay) (affine): madd-2007-bl."""
    if point is None:
        return (ax, ay, 1)
    x, y, z = point
    p = _P
    zz = z * z % p
    h = (ax * zz - x) % p
    r = 2 * (ay * z * zz - y) % p
    if h == 0:
        if r == 0:
            return _double(point)  # the same point
        return None  # P + (-P)
    hh = h * h % p
    i = 4 * hh % p
    j = h * i % p
    v = x * i % p
    x3 = (r * r - j - 2 * v) % p
    y3 = (r * (v - x3) - 2 * y * j) % p
    z3 = ((z + h) * (z + h) - zz - hh) % p
    return (x3, y3, z3)


def _affine(point):
    x, y, z = point
    zi = _inverse(z, _P)
    zi2 = zi * zi % _P
    return x * zi2 % _P, y * zi2 * zi % _P


def public_key(data):
    """(x, y) from a SEC1 uncompressed point (65 bytes, 0x04 | x | y) or the
    64 bytes x | y. Raises ValueError unless it is a valid point of the curve."""
    if len(data) == 65 and data[0] == 4:
        data = data[1:]
    if len(data) != 64:
        raise ValueError("P-256 public key: 64 or 65 bytes")
    x = int.from_bytes(data[:32], "big")
    y = int.from_bytes(data[32:], "big")
    # SEC1 3.2.2.1: coordinates in the field, on the curve (not infinity:
    # that has no affine encoding; the cofactor is 1, so nothing else to check)
    if x >= _P or y >= _P or (y * y - (x * x * x - 3 * x + _B)) % _P:
        raise ValueError("P-256 public key: not a point of the curve")
    return (x, y)


def verify(key, signature, message):
    """True if `signature` (64 bytes r | s, as IEEE P1363) is a valid ECDSA
    P-256 / SHA-256 signature of `message` by `key` ((x, y) from
    public_key()). Any malformed signature is simply False."""
    return verify_digest(key, signature, hashlib.sha256(message).digest())


def verify_digest(key, signature, digest):
    """verify() for a message whose SHA-256 `digest` (32 bytes) the caller
    computed, e.g. while the message streamed to flash."""
    if len(signature) != 64 or len(digest) != 32:
        return False
    n = _N
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < n and 0 < s < n):
        return False
    # SHA-256 is exactly as wide as n: e is the whole digest
    e = int.from_bytes(digest, "big")
    w = _inverse(s, n)
    u1 = e * w % n
    u2 = r * w % n
    qx, qy = key
    both = _add_affine((_GX, _GY, 1), qx, qy)
    bx = by = None  # G + Q, affine; None when Q = -G (G + Q is infinity)
    if both is not None:
        bx, by = _affine(both)
    point = None
    for bit in range(255, -1, -1):
        point = _double(point)
        pick = ((u1 >> bit) & 1) | (((u2 >> bit) & 1) << 1)
        if pick == 1:
            point = _add_affine(point, _GX, _GY)
        elif pick == 2:
            point = _add_affine(point, qx, qy)
        elif pick == 3:
            if bx is None:
                continue  # G + Q is infinity: nothing to add
            point = _add_affine(point, bx, by)
    if point is None or point[2] == 0:
        return False
    x, _ = _affine(point)
    return x % n == r

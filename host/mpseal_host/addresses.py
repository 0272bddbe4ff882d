"""HOST:PORT as every mpseal command and config file spells an address."""


def parse_host_port(text, default_port=None, listen=False):
    """'HOST:PORT' (or 'HOST' when default_port is given; '[::1]:PORT' for
    IPv6) -> (host, port). listen=True also allows port 0 (any free port). ValueError with a readable message otherwise."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]" in text:  # [v6]:port or [v6]
        end = text.index("]")
        host, rest = text[1:end], text[end + 1:]
        sep, port = (":", rest[1:]) if rest.startswith(":") else ("", "")
    elif not sep or ":" in host:  # no colon, or a bare IPv6 address
        host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError("an address is HOST:PORT (e.g. 127.0.0.1:4740), got %r" % text)
        port = str(default_port)
    if not host:
        raise ValueError("an address needs a host before the port, got %r" % text)
    if not port.isdigit() or not (0 if listen else 1) <= int(port) <= 65535:
        raise ValueError("the port in %r is not a number from %d to 65535" % (text, 0 if listen else 1))
    return host, int(port)


def local_addresses():
    """This machine's IPv4 addresses as [(interface, address)], loopback
    last: what a board on the same network could be told to send to. Read
    with SIOCGIFADDR per interface (Linux); empty where that is not possible.
    Nothing is sent anywhere."""
    import fcntl
    import socket
    import struct

    found = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return found
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for name in names:
            try:
                raw = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:  # no IPv4 address on this interface
                continue
            found.append((name, socket.inet_ntoa(raw[20:24])))
    finally:
        probe.close()
    return sorted(found, key=lambda item: item[1].startswith("127."))


def is_local_address(host):
    """True when `host` (a name or an IPv4 literal) resolves to an address of this machine."""
    import socket

    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(resolved & {address for _, address in local_addresses()})

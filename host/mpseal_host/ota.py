"""Over-the-air updates on the host side (docs/ota.md): the receiver serves
release folders (`mpseal release` output) over HTTP, Range requests
included, so a board resumes a file where a dropped link or a power cut left
it. Signatures, not this server, prove where a release comes from: anyone
may read these files, and a board refuses any byte the release key did not
sign.

    GET /ota/<board>/<version>/release.txt | release.sig | files/<path on the board>
"""
import os

from aiohttp import web as aioweb

URL_PREFIX = "/ota/"


def add_arguments(parser):
    parser.add_argument("--releases", help="serve this releases folder (mpseal release --releases) at %s for OTA updates"
                        % URL_PREFIX)


def add_routes(app, releases):
    """Static routes over `releases`: aiohttp's FileResponse answers Range
    requests (206, 416) and never follows a path out of the folder."""
    if releases:
        if not os.path.isdir(releases):
            raise ValueError("--releases %s: no such folder (make one with 'mpseal release')" % releases)
        app.router.add_static(URL_PREFIX, os.path.abspath(releases), show_index=False, follow_symlinks=False)


def release_url(base, board, version):
    """The URL a board fetches release `version` of `board` from, given the
    receiver's base URL (http://host:port/)."""
    return "%s%s%s/%d/" % (base.rstrip("/"), URL_PREFIX, board, version)

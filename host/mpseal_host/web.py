"""The live page at `/`: static HTML+JS from mpseal_host/static, no CDN (the
page must work on a machine without internet). The JS asks /api/dashboard.

Charts are drawn with uPlot, an npm dependency that `make` installs into the
venv (`.venv/node_modules/uplot`, never into the repo); the receiver serves
its two files under /static/vendor/uplot/. MPSEAL_UPLOT_DIR points elsewhere
(a folder holding uPlot.iife.min.js and uPlot.min.css). Without it the page
still works, without charts, and says so.
"""
import os
import sys
from pathlib import Path

from aiohttp import web as aioweb

STATIC = Path(__file__).with_name("static")
UPLOT_FILES = ("uPlot.iife.min.js", "uPlot.min.css")
UPLOT_URL = "/static/vendor/uplot/"


def uplot_dir():
    """The folder uPlot's dist files are in, or None when it is not installed."""
    configured = os.environ.get("MPSEAL_UPLOT_DIR")
    folder = Path(configured) if configured else Path(sys.prefix) / "node_modules" / "uplot" / "dist"
    return folder if all((folder / name).is_file() for name in UPLOT_FILES) else None


async def index(request):
    return aioweb.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app):
    app.router.add_get("/", index)
    folder = uplot_dir()
    app["uplot_url"] = UPLOT_URL if folder else None
    if folder:
        for name in UPLOT_FILES:
            app.router.add_get(UPLOT_URL + name, lambda request, path=folder / name: aioweb.FileResponse(path))
    app.router.add_static("/static/", STATIC, append_version=False)

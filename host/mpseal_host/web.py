"""The live page at `/`: static HTML+JS from mpseal_host/static, no CDN (the
page must work on a machine without internet). The JS polls the JSON API."""
from pathlib import Path

from aiohttp import web as aioweb

STATIC = Path(__file__).with_name("static")


async def index(request):
    return aioweb.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app):
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=False)

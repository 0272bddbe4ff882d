"""Who may use the API listener: Host/Origin checks always, API tokens when
the API is exposed (docs/receiver.md, "Deployment").

* Host: a request must name this receiver (its bound address, localhost,
  its host names, or a name given with --api-host). Anything else is a DNS
  rebinding attempt (evil.example resolving to 127.0.0.1) and gets 421.
* Origin / Sec-Fetch-Site: a browser request from another site is refused
  (403 bad_origin); a state-changing request authenticated by cookie must
  carry a matching Origin (CSRF). Scripts with a bearer token send no Origin.
* Tokens (`mpseal token new NAME --scope read|admin`): 32 random bytes,
  shown once, stored as SHA-256. Scripts send `Authorization: Bearer TOKEN`;
  the page logs in once at /login and then sends an HttpOnly, SameSite=Strict
  cookie. `read` may GET; `admin` may also change things (POST, DELETE, ...).
  Required whenever the API listens on a non-loopback address (or with
  --require-token); a loopback API is for the local user (or a reverse proxy
  that authenticates) and needs none.

access_middleware is the one place routes are authorised: every route on
the API app, including those other modules add, inherits it.
"""
import hashlib
import html
import ipaddress
import logging
import secrets
import time

from aiohttp import web as aioweb

log = logging.getLogger("mpseal.requests")

TOKEN_PREFIX = "mpseal_"
SCOPES = ("read", "admin")
COOKIE = "mpseal_token"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
TOKEN_CACHE_S = 2.0  # a revoked token stops working within this time
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PUBLIC_PATHS = ("/login", "/logout", "/static/style.css")
ACCESS_KEY = aioweb.AppKey("access_policy", object)


def new_token():
    """(token text shown to the user once, digest kept in the database)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token):
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def is_loopback(host):
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_names(host, port, local_addresses=(), extra=()):
    """Every Host header value that names an API bound to host:port."""
    names = set()
    bases = {host}
    if is_loopback(host) or host in ("0.0.0.0", "::", ""):
        bases |= {"127.0.0.1", "localhost", "[::1]"}
    if host in ("0.0.0.0", "::", ""):
        bases |= set(local_addresses)
        import socket

        bases |= {socket.gethostname(), socket.getfqdn()}
    for base in bases:
        if base and ":" in base and not base.startswith("["):
            base = "[%s]" % base  # IPv6 literal in a Host header
        if base:
            names.add("%s:%d" % (base.lower(), port))
            if port == 80:
                names.add(base.lower())
    for name in extra:
        names.add(name.lower() if ":" in name else "%s:%d" % (name.lower(), port))
        if ":" not in name:
            names.add(name.lower())  # behind a reverse proxy on 80/443 the Host has no port
    return names


class AccessPolicy:
    def __init__(self, reads, require_token, hosts, counters):
        self.reads = reads  # ReadPool: tokens are looked up off the loop
        self.require_token = require_token
        self.set_hosts(hosts)
        self.counters = counters
        self.cache = {}  # digest -> (scope or None, expires)

    def set_hosts(self, hosts):
        """The Host header values that name this API (known once it is bound)."""
        self.hosts = set(hosts)
        self.origins = {"http://" + h for h in self.hosts} | {"https://" + h for h in self.hosts}

    def refuse(self, request, status, reason, **headers):
        key = "api_refused_" + reason
        self.counters[key] = self.counters.get(key, 0) + 1
        log.warning("api: refused %s %s from %s: %s", request.method, request.path[:100], request.remote, reason)
        return aioweb.json_response({"error": reason}, status=status, headers=headers)

    async def scope_of(self, token):
        if not token or len(token) > 200:
            return None
        digest = token_digest(token)
        now = time.monotonic()
        hit = self.cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await self.reads.run(_token_scope, digest)
        scope = None if found is None else found[1]
        if len(self.cache) > 1000:
            self.cache.clear()
        self.cache[digest] = (scope, now + TOKEN_CACHE_S)
        return scope


def _token_scope(storage, digest):
    return storage.token_scope(digest)


def _bearer(request):
    value = request.headers.get("Authorization", "")
    kind, _, token = value.partition(" ")
    return token.strip() if kind.lower() == "bearer" else None


@aioweb.middleware
async def access_middleware(request, handler):
    policy = request.app[ACCESS_KEY]
    if request.headers.get("Host", "").lower() not in policy.hosts:
        return policy.refuse(request, 421, "bad_host")
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in policy.origins:
        return policy.refuse(request, 403, "bad_origin")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return policy.refuse(request, 403, "bad_origin")
    unsafe = request.method not in SAFE_METHODS
    if request.path in PUBLIC_PATHS:
        if unsafe and origin is None and request.headers.get("Sec-Fetch-Site") is None and _bearer(request) is None:
            # a login form post without Origin: not from a browser we can vouch for
            return policy.refuse(request, 403, "bad_origin")
        return await handler(request)
    if not policy.require_token:
        return await handler(request)
    token = _bearer(request)
    by_cookie = token is None
    if by_cookie:
        token = request.cookies.get(COOKIE)
    scope = await policy.scope_of(token)
    if scope is None:
        if request.method == "GET" and request.path == "/":
            raise aioweb.HTTPSeeOther("/login")
        return policy.refuse(request, 401, "unauthorized", **{"WWW-Authenticate": 'Bearer realm="mpseal"'})
    if unsafe:
        if by_cookie and origin is None:  # CSRF: a cookie alone never changes anything
            return policy.refuse(request, 403, "bad_origin")
        if scope != "admin":
            return policy.refuse(request, 403, "forbidden")
    request["scope"] = scope
    return await handler(request)


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mpseal receiver: log in</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main><h1>mpseal receiver</h1>
<form method="post" action="/login">
<p><label>API token (<code>mpseal token new NAME</code>)<br>
<input type="password" name="token" autocomplete="current-password" size="56" required></label></p>
<p><button type="submit">Log in</button></p>%s
</form></main></body></html>
"""


async def login_page(request):
    return aioweb.Response(text=LOGIN_PAGE % "", content_type="text/html", headers={"Cache-Control": "no-store"})


async def login(request):
    policy = request.app[ACCESS_KEY]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    scope = await policy.scope_of(token)
    if scope is None:
        policy.refuse(request, 401, "bad_token")
        message = "<p class=\"status\">%s</p>" % html.escape("That token is not valid (revoked, or mistyped).")
        return aioweb.Response(text=LOGIN_PAGE % message, content_type="text/html", status=401)
    response = aioweb.Response(status=303, headers={"Location": "/"})
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Strict", path="/",
                        secure=request.secure)
    return response


async def logout(request):
    response = aioweb.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


def add_routes(app):
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)

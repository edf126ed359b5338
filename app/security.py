"""Who may do what over HTTP: keys, roles, workspaces, signed media links, and the guard.

- **Keys** (:class:`KeyRing`): each key has a name, a role (read < ingest < admin) and the
  workspaces it sees. Only SHA-256 digests are kept in memory, a presented key is hashed
  and compared with every digest in constant time (``hmac.compare_digest``, no early
  exit), so neither the configuration nor the timing tells a key. Failed checks are
  throttled per client address.
- **Signed media links** (:class:`MediaLinks`): ``<img>`` and ``<video>`` cannot send a
  Bearer header, so the media links in an answer carry an expiry and an HMAC under a
  random secret kept in the data folder (or ``MMRAG_MEDIA_SECRET`` on several replicas):
  a link shown in a page never lets anyone test guessed keys offline.
- **The guard** (:class:`Guard`, pure ASGI so that streaming and client disconnects pass
  through untouched): the Host allowlist (DNS rebinding), the Origin allowlist, one body
  size limit for every request (counted as it streams in, before anything is parsed or
  written), security headers (``nosniff``; a CSP with ``frame-ancestors`` on the pages),
  the UI login throttle, and a 500 in our one JSON shape that never breaks the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

from starlette.exceptions import HTTPException

from app.settings import ApiKey, Role, Settings
from retrieval.errors import ConfigError

log = logging.getLogger("mmrag.api")

API = "/api/v1"
ROLES: tuple[Role, ...] = ("read", "ingest", "admin")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


# --- principals and keys --------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's name and role, and the workspaces it may see (None: all)."""

    name: str
    role: Role
    workspaces: frozenset[str] | None
    key_id: str = ""  # a short digest of the key: its own rate-limit bucket

    def allows(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, workspace: str) -> bool:
        return self.workspaces is None or workspace in self.workspaces

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The workspaces to filter on (None: no filter)."""
        return None if self.workspaces is None else tuple(sorted(self.workspaces))

    def home(self, default: str) -> str:
        """The workspace this principal ingests into when it names none."""
        if self.workspaces is None or default in self.workspaces:
            return default
        return min(self.workspaces)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """The configured keys as digests, each with its :class:`Principal`."""

    def __init__(self, keys: Sequence[str | ApiKey], default_workspace: str) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        self._names: dict[str, Principal] = {}
        for entry in keys:
            if isinstance(entry, str):
                # The plain form of earlier versions: an admin key for every workspace.
                hashed = entry.startswith("sha256:") and len(entry) == 71
                secret = bytes.fromhex(entry[7:]) if hashed else digest(entry)
                self._add(secret, Principal("admin", "admin", None, secret.hex()[:12]))
                continue
            secret = (
                bytes.fromhex(entry.key_sha256) if entry.key_sha256 else digest(entry.key or "")
            )
            spaces = entry.workspaces or [default_workspace]
            scope = None if "*" in spaces else frozenset(spaces)
            self._add(secret, Principal(entry.name, entry.role, scope, secret.hex()[:12]))

    def _add(self, secret: bytes, who: Principal) -> None:
        known = self._names.get(who.name)
        if known is not None and (known.role, known.workspaces) != (who.role, who.workspaces):
            raise ConfigError(
                f"two API keys are named {who.name!r} with different roles or workspaces; "
                "give each key its own name"
            )
        self._names[who.name] = who
        self._entries.append((secret, who))

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def add_local(self, token: str) -> None:
        """Accept the token ``mmrag serve`` leaves in its data folder (see FolderLock)."""
        self._add(digest(token), Principal("local", "admin", None, "local"))

    def authenticate(self, key: str) -> Principal | None:
        presented = digest(key)
        found: Principal | None = None
        for secret, who in self._entries:  # every entry, always: no early exit
            if hmac.compare_digest(presented, secret) and found is None:
                found = who
        return found

    def named(self, name: str) -> Principal | None:
        return self._names.get(name)


def new_key() -> tuple[str, str]:
    """A fresh random key and its SHA-256 (hex), for ``mmrag keys new``."""
    key = secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


# --- rate limits --------------------------------------------------------------------------


class RateLimiter:
    """At most ``per_minute`` events per key (or client address) in any 60 s window.

    The counting is the ``limits`` library's moving window, in the storage named by
    ``storage`` (a URI): ``memory://`` keeps it in this process, and expires idle keys,
    so an attacker rotating addresses cannot grow it; ``redis://...`` shares the counts
    between replicas, so a client cannot multiply its budget by the number of servers.
    ``scope`` keeps the app's limiters (requests, failures, renders) apart in one storage.
    """

    def __init__(self, per_minute: int, storage: str = "memory://", scope: str = "") -> None:
        from limits import RateLimitItemPerMinute
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.per_minute = per_minute
        self._scope = scope
        try:
            self._limiter = MovingWindowRateLimiter(storage_from_string(storage))
        except Exception as e:  # an unknown scheme, or its client library missing
            raise ConfigError(f"MMRAG_RATE_LIMIT_STORAGE={storage!r} cannot be used: {e}") from e
        self._item = RateLimitItemPerMinute(max(per_minute, 1))

    def _wait(self, who: str) -> float:
        reset, _ = self._limiter.get_window_stats(self._item, self._scope, who)
        return max(reset - time.time(), 0.0)

    def check(self, who: str) -> float | None:
        """Count one event: None if allowed; otherwise the seconds until one is allowed."""
        if self.per_minute <= 0 or self._limiter.hit(self._item, self._scope, who):
            return None
        return self._wait(who)

    def blocked(self, who: str) -> float | None:
        """Like :meth:`check` without counting: for throttling failures only."""
        if self.per_minute <= 0 or self._limiter.test(self._item, self._scope, who):
            return None
        return self._wait(who)

    def record(self, who: str) -> None:
        """Count one event (a failure); past the limit there is nothing more to count."""
        if self.per_minute > 0:
            self._limiter.hit(self._item, self._scope, who)


# --- signed media links --------------------------------------------------------------------


def load_secret(settings: Settings) -> bytes:
    """The link-signing secret: the setting, or 32 random bytes kept in the data folder
    (created once, owner-only, atomically; two processes starting at once agree)."""
    if settings.media_secret:
        return hashlib.sha256(settings.media_secret.encode()).digest()
    path = settings.data_dir / "secret.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) < 32:
            raise ConfigError(f"{path} is damaged (shorter than 32 bytes); delete it") from None
        return data[:32]
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()[:32]


class MediaLinks:
    """The URLs of a source's media; signed when the API has keys.

    A signed link carries ``exp`` (unix seconds) and ``sig``, an HMAC-SHA256 of the
    endpoint, path, page and expiry under ``secret``. Expiry is rounded up to a whole
    ``ttl_s`` period and lies between one and two of them ahead, so links to the same
    file stay identical for a while and the browser's cache works.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.ttl_s = max(60, ttl_s)
        self._clock = clock

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def _sig(self, endpoint: str, path: str, page: int | str | None, exp: int) -> str:
        assert self._secret is not None
        message = f"{endpoint}\n{path}\n{'' if page is None else page}\n{exp}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def _url(self, endpoint: str, path: str, page: int | None = None) -> str:
        url = f"{API}/{endpoint}?path={quote(path, safe='')}"
        if page is not None:
            url += f"&page={page}"
        if self._secret is not None:
            exp = (int(self._clock()) // self.ttl_s + 2) * self.ttl_s
            url += f"&exp={exp}&sig={self._sig(endpoint, path, page, exp)}"
        return url

    def media(self, path: str | None) -> str | None:
        return self._url("media", path) if path else None

    def page(self, path: str, page: int) -> str:
        return self._url("page", path, page)

    def valid(self, endpoint: str, path: str, page: int | str | None, exp: int, sig: str) -> bool:
        """Whether ``sig`` signs this request and has not expired."""
        if self._secret is None or exp < self._clock():
            return False
        return hmac.compare_digest(sig, self._sig(endpoint, path, page, exp))


UNSIGNED = MediaLinks()


# --- the guard ----------------------------------------------------------------------------


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host allowlist: the setting, or localhost names on a loopback bind."""
    if settings.allowed_hosts is not None:
        return list(settings.allowed_hosts)
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    return list(LOOPBACK_HOSTS) if loopback else ["*"]


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether a Host header's name (port dropped) matches the allowlist."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:7860
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    for pattern in patterns:
        p = pattern.lower()
        if p == "*" or p == name or (p.startswith("*.") and name.endswith(p[1:])):
            return True
    return False


# The web UI's pages: Gradio needs inline scripts and styles; everything else is our own
# origin. No remote images (an answer cannot make the browser call another host), no
# plugins, and only our own pages may frame it.
UI_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'self'"
)
# The widget's demo page: a third-party page stand-in; nobody needs to frame it.
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class BodyTooLarge(HTTPException):
    """Raised by the guard's ``receive`` past the body limit. An HTTPException, so that
    FastAPI's body parsing passes it on as a 413 instead of calling it a parse error."""

    def __init__(self, limit_mb: int) -> None:
        super().__init__(413, f"the request is larger than the {limit_mb} MB limit")


@dataclass
class GuardConfig:
    hosts: list[str]
    origins: set[str]
    max_body: int
    max_body_mb: int
    login_paths: tuple[str, ...]
    login_throttle: RateLimiter


def _json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    return body, raw


class Guard:
    """Pure-ASGI middleware for every request of the app (see the module docstring)."""

    def __init__(self, app: Any, config: GuardConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        c = self.config
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope.get("path", "")
        client = (scope.get("client") or ("?", 0))[0]

        async def refuse(status: int, code: str, message: str, **extra: str) -> None:
            body, raw = _json(status, code, message, extra)
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})

        host = headers.get("host", "")
        if not host_allowed(host, c.hosts):
            # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host evil.example.
            await refuse(400, "host_not_allowed", f"host {host[:100]!r} is not served here")
            return
        origin = headers.get("origin")
        # Same host (port included) is our own page: /ui, /demo.
        foreign = bool(origin) and urlparse(origin or "").netloc.lower() != host.lower()
        if foreign and "*" not in c.origins and origin not in c.origins:
            await refuse(403, "origin_not_allowed", f"origin {(origin or '')[:200]} is not allowed")
            return
        if "/gradio_api/file=http" in path or "/gradio_api/proxy=" in path:
            # Gradio would fetch any public URL for a client: we never need it.
            await refuse(403, "forbidden", "fetching remote files through the UI is disabled")
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > c.max_body:
            await refuse(
                413, "too_large", f"the request is larger than the {c.max_body_mb} MB limit"
            )
            return
        is_login = scope.get("method") == "POST" and path in c.login_paths
        if is_login and (wait := c.login_throttle.blocked(client)) is not None:
            await refuse(
                429,
                "rate_limited",
                f"too many failed logins; retry in {wait:.0f} s",
                **{"Retry-After": str(max(1, round(wait)))},
            )
            return

        received = 0

        async def counted_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > c.max_body:
                    raise BodyTooLarge(c.max_body_mb)
            return message

        started = False
        page_csp = UI_CSP if path.startswith("/ui") else DEMO_CSP if path == "/demo" else None

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                raw = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                raw.append((b"x-content-type-options", b"nosniff"))
                if b"referrer-policy" not in names:
                    raw.append((b"referrer-policy", b"no-referrer"))
                if page_csp and b"content-security-policy" not in names:
                    raw.append((b"content-security-policy", page_csp.encode()))
                    raw.append((b"x-frame-options", b"SAMEORIGIN"))
                if is_login and message["status"] >= 400:
                    c.login_throttle.record(client)
                message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await refuse(
                    413, "too_large", f"the request is larger than the {c.max_body_mb} MB limit"
                )
        except Exception:
            # Answered here, not re-raised: Starlette's outermost handler would re-raise
            # after answering, and the server would then drop the connection.
            log.exception("unexpected error on %s %s", scope.get("method"), path)
            if not started:
                await refuse(500, "internal", "an unexpected error; it was logged on the server")

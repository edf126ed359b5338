"""What every route depends on: the app's shared parts, and who is calling.

:class:`Gate` turns a request into a :class:`~app.security.Principal` (API key, role,
workspaces) and applies the rate limits; the ``Reader`` / ``Ingester`` / ``Admin``
annotations are FastAPI dependencies that refuse a caller without the role. Routes get
the service, uploads, jobs and page cache from :class:`Parts` (one per app), never
from module globals, so two apps in one process (tests) never share state.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from app.errors import ApiError
from app.jobs import Jobs
from app.pages import PageRenders
from app.security import KeyRing, MediaLinks, Principal, RateLimiter, load_secret
from app.service import Service
from app.settings import Role, Settings
from app.uploads import Uploads


class Gate:
    """Who is asking and whether they may: keys, roles, rate limits (one per app)."""

    def __init__(self, settings: Settings) -> None:
        self.keys = KeyRing(settings.api_keys, settings.workspace)
        # Signed only with keys: without them media need no signature.
        secret = load_secret(settings) if self.keys.enabled else None
        self.links = MediaLinks(secret, settings.media_link_ttl_s)
        storage = settings.rate_limit_storage
        self.limiter = RateLimiter(settings.rate_limit_per_minute, storage, "requests")
        self.failures = RateLimiter(settings.auth_failures_per_minute, storage, "failures")
        self.renders = RateLimiter(settings.page_renders_per_minute, storage, "renders")
        # Without keys, every client is an admin of the configured workspace.
        self.anonymous = Principal("anonymous", "admin", frozenset({settings.workspace}))

    def caller(self, request: Request) -> Principal:
        if not self.keys.enabled:
            return self.anonymous
        address = _address(request)
        if (wait := self.failures.blocked(address)) is not None:
            raise limited(f"too many requests with a wrong key; retry in {wait:.0f} s", wait)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        who = None
        if scheme.lower() == "bearer" and token.strip():
            who = self.keys.authenticate(token.strip())
        if who is None:
            self.failures.record(address)
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
                {"WWW-Authenticate": "Bearer"},
            )
        return who

    def check(self, request: Request, role: Role) -> Principal:
        who = self.caller(request)
        if not who.allows(role):
            raise ApiError(403, "forbidden", f"this key's role ({who.role}) may not do this")
        if (wait := self.limiter.check(self.bucket(request, who))) is not None:
            raise limited(
                f"more than {self.limiter.per_minute} requests a minute; retry in {wait:.0f} s",
                wait,
            )
        return who

    def bucket(self, request: Request, who: Principal | None) -> str:
        if self.keys.enabled and who is not None:
            return f"key:{who.key_id}"
        return f"ip:{_address(request)}"


@dataclass(frozen=True)
class Parts:
    """The shared parts of one app."""

    service: Service
    gate: Gate
    uploads: Uploads
    jobs: Jobs
    ingest_worker: ThreadPoolExecutor  # one ingest at a time; answers never wait for it
    pages: PageRenders

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def links(self) -> MediaLinks:
        return self.gate.links

    @property
    def keys(self) -> KeyRing:
        return self.gate.keys


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


def limited(message: str, wait: float) -> ApiError:
    return ApiError(429, "rate_limited", message, {"Retry-After": str(max(1, round(wait)))})


def _parts(request: Request) -> Parts:
    parts: Parts = request.app.state.parts
    return parts


def _reader(request: Request) -> Principal:
    return _parts(request).gate.check(request, "read")


def _ingester(request: Request) -> Principal:
    return _parts(request).gate.check(request, "ingest")


def _admin(request: Request) -> Principal:
    return _parts(request).gate.check(request, "admin")


def _media_caller(
    request: Request,
    exp: Annotated[int | None, Query(description="Expiry of a signed link.")] = None,
    sig: Annotated[
        str | None, Query(max_length=64, description="Signature of a signed link.")
    ] = None,
) -> Principal | None:
    """A valid signed link (None: it was issued to someone who may see the file) or a
    caller; media are not rate limited."""
    gate = _parts(request).gate
    q = request.query_params
    endpoint = request.url.path.rsplit("/", 1)[-1]
    target = (endpoint, q.get("path", ""), q.get("page", ""))
    if gate.keys.enabled and exp is not None and sig and gate.links.valid(*target, exp, sig):
        return None
    return gate.caller(request)


App = Annotated[Parts, Depends(_parts)]
Reader = Annotated[Principal, Depends(_reader)]
Ingester = Annotated[Principal, Depends(_ingester)]
Admin = Annotated[Principal, Depends(_admin)]
MediaCaller = Annotated[Principal | None, Depends(_media_caller)]
Workspaces = Annotated[
    list[str] | None,
    Query(max_length=64, description="Only these of the key's workspaces (default: all)."),
]


def scope_of(who: Principal, wanted: list[str] | None) -> tuple[str, ...] | None:
    """The workspaces a request reads: the key's, or the asked ones it may see."""
    if not wanted:
        return who.scope
    hidden = [w for w in wanted if not who.sees(w)]
    if hidden:
        raise ApiError(403, "forbidden", f"this key does not see workspace {hidden[0]!r}")
    return tuple(sorted(set(wanted)))

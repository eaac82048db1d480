"""The dashboard's guards: the access token (non-local binds) and the CSRF token of actions."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = frozenset({"localhost"})


def is_local(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuses (ValueError) to listen on anything but loopback without a token."""
    if not is_local(host) and not token:
        raise ValueError(
            f"listening on {host} needs a token: --token or DURABLE_DASHBOARD_TOKEN "
            "(only 127.0.0.1, ::1 and localhost may go without)"
        )


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def presented_token(request_authorization: str | None) -> str | None:
    """The token of an Authorization header: a bearer token or a basic auth password."""
    if not request_authorization:
        return None
    scheme, _, value = request_authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


class TokenMiddleware:
    """Answers 401 to every request that does not carry the token (when there is one)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token and scope["type"] == "http":
            given = presented_token(Request(scope).headers.get("authorization"))
            if given is None or not _same(given, self.token):
                response: Response = PlainTextResponse(
                    "401: a token is needed (bearer, or the password of basic auth)",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="durable dashboard"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Csrf:
    """A per-process secret that every form of an action carries in a hidden field."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)

    def valid(self, given: object) -> bool:
        return isinstance(given, str) and _same(given, self.token)

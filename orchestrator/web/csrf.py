"""Cross-site request forgery protection by double submit: a random token in a cookie
(``SameSite=Strict``) that every form also carries in a hidden field.

A page on another site can make a browser post to the web view, cookie included, but cannot
read the cookie to put it in the form; a request whose field is missing or differs is refused.
No server-side secret is needed, so any number of copies of the app may serve one deployment.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "continuum_csrf"
FIELD = "csrf_token"


def token(request: Request) -> str:
    """The browser's token, or a new one to hand it."""
    existing = request.cookies.get(COOKIE, "")
    return existing if len(existing) == 43 else secrets.token_urlsafe(32)


def set_cookie(request: Request, response: Response, value: str) -> None:
    """Hand ``value`` to the browser unless it holds it already."""
    if request.cookies.get(COOKIE) != value:
        response.set_cookie(
            COOKIE, value, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )


def valid(request: Request, submitted: str | None) -> bool:
    """Whether the form's token is the cookie's."""
    cookie = request.cookies.get(COOKIE)
    return bool(cookie and submitted) and hmac.compare_digest(cookie or "", submitted or "")

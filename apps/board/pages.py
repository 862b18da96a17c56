"""Errors and headers around every answer.

Whatever goes wrong, the client gets a short answer it can read: a page
for a browser, ``{"error": ...}`` for a script (:func:`wants_json`). The
middleware here turns each plain-text error response, whoever made it (a
handler's ``HTTPError``, the router's 404 or 405, the CSRF check's 403, a
form over its limits), into one or the other, keeping its status and
headers. An exception nobody expected is logged with its traceback and
answered 500 without it. A page that needs a user sends the browser to the
log-in page and a script gets a 401. Every response carries the security
headers of :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

from corofw import Request, Response, Router
from corofw.http.headers import Headers

from .context import Board, LoginRequired, current_user, wants_json

log = logging.getLogger("board")

#: Scripts, styles and images from this site only; no framing, no sniffing.
SECURITY_HEADERS = (
    ("content-security-policy", "default-src 'self'; img-src 'self'; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
)

def _json_error(body: bytes) -> str:
    """The message of a JSON error body (``{"error": ..., ...}``), as text."""
    try:
        data = json.loads(body)
    except ValueError:
        return "The request failed."
    if isinstance(data, dict) and "error" in data:
        details = [str(value) for key, value in data.items() if key not in ("error", "timeout")]
        return ": ".join([str(data["error"]), *details])
    return str(data)


TITLES = {400: "Bad request", 401: "Please log in", 403: "Refused", 404: "Not found",
          405: "Not allowed", 409: "Conflict", 413: "Too large",
          415: "Unsupported file", 500: "Something went wrong", 504: "Too slow"}


def install(routes: Router, board: Board) -> None:
    """Add the error handling and the security headers to ``routes`` (call
    it first: its middleware must run outermost)."""

    @routes.middleware
    def security_headers(request, call_next):
        response = yield from call_next(request)
        for name, value in SECURITY_HEADERS:
            response.set_header(name, value)
        return response

    @routes.middleware
    def error_pages(request, call_next):
        response = yield from call_next(request)
        if type(response) is not Response or response.status < 400:
            return response
        content_type = (response.content_type or "").split(";")[0]
        if content_type == "application/json":
            if wants_json(request):
                return response
            message = _json_error(response.body)
        elif content_type == "text/plain":
            message = bytes(response.body).decode("utf-8", "replace").strip()
        else:
            return response
        headers = Headers([(name, value) for name, value in (response.headers or Headers()).items()
                           if name.lower() != "content-type"])
        if wants_json(request):
            return Response.json({"error": message}, response.status, headers)
        return board.templates.render(
            "error.html", status=response.status, headers=headers, request=request,
            user=current_user(request), settings=board.settings, message=message,
            title=TITLES.get(response.status, "Error"), code=response.status)

    @routes.error_handler(LoginRequired)
    def login_required(request, exc):
        if wants_json(request):
            return Response.json({"error": "log in first"}, 401)
        target = request.target if request.method == "GET" else "/"
        location = "/login?next=" + quote(target, safe="")
        if "session" in request.cookies:
            location += "&expired=1"
        return Response.redirect(location, 303)

    @routes.error_handler(Exception)
    def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        return Response.text("Something went wrong on our side; it has been logged. "
                             "Please try again.", 500)

"""Signing up, logging in and out.

Passwords are hashed with ``hashlib.scrypt`` (n=2**14, r=8, p=1: about
16 MiB and tens of milliseconds each), always in the kernel's thread pool
(``run_in_thread``) so the loop keeps serving meanwhile. The stored form is
``scrypt$n$r$p$salt$hash`` (base64), so the cost can be raised later
without invalidating old hashes. A log-in with an unknown name still
hashes once, so the answer takes as long as with a wrong password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any

from corofw import Coro, Request, Response, Router, run_in_thread
from corofw.web import get_session

from .context import Board, current_user, safe_next

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
MIN_PASSWORD, MAX_PASSWORD = 8, 200


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
                  ) -> str:
    """The stored form of ``password`` with a new random salt (blocking:
    call it through ``run_in_thread``)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)])


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (blocking); False for a
    stored value this module did not make."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


#: Checked when the name is unknown, so that both failures take as long.
_DECOY_HASH = hash_password("not a password anybody has")


def credential_problem(username: str, password: str) -> str | None:
    """Why a sign-up with these would be refused, or None."""
    if not USERNAME.fullmatch(username):
        return "A user name is 3 to 32 letters, digits, dots, dashes or underscores."
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long."
    return None


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def log_in(request: Request, user_id: int, username: str) -> None:
    """Make the session this user's."""
    session = get_session(request)
    session.clear()
    session["uid"] = user_id
    session["name"] = username


def make_routes(board: Board) -> Router:
    """``/signup``, ``/login`` and ``/logout``."""
    routes = Router()
    store = board.store

    @routes.get("/signup")
    def signup_form(request):
        if current_user(request):
            return Response.redirect("/", 303)
        return board.page(request, "signup.html", username="", error=None)

    @routes.post("/signup")
    def signup(request):
        form = yield from request.form()
        username, password = _field(form, "username").strip(), _field(form, "password")
        problem = credential_problem(username, password)
        if problem:
            return board.page(request, "signup.html", 400, username=username, error=problem)
        password_hash = yield from run_in_thread(hash_password, password)
        user_id = yield from store.create_user(username, password_hash)
        if user_id is None:
            return board.page(request, "signup.html", 409, username=username,
                              error=f"The name {username} is taken; choose another.")
        log_in(request, user_id, username)
        return Response.redirect("/", 303)

    @routes.get("/login")
    def login_form(request):
        target = safe_next(request.query.get("next"))
        if current_user(request):
            return Response.redirect(target, 303)
        expired = request.query.get("expired") == "1"
        return board.page(request, "login.html", username="", next=target, error=None,
                          notice="Your session has ended; log in again." if expired else None)

    @routes.post("/login")
    def login(request):
        form = yield from request.form()
        username, password = _field(form, "username").strip(), _field(form, "password")
        target = safe_next(_field(form, "next"))
        user = (yield from store.find_user(username)) if username else None
        if not (yield from _password_matches(password, user)):
            return board.page(request, "login.html", 400, username=username, next=target,
                              error="Wrong user name or password.", notice=None)
        log_in(request, user.id, user.username)
        return Response.redirect(target, 303)

    @routes.post("/logout")
    def logout(request):
        get_session(request).clear()
        return Response.redirect("/login", 303)

    return routes


def _password_matches(password: str, user: Any) -> Coro[bool]:
    if not password or len(password) > MAX_PASSWORD:
        return False
    stored = user.password_hash if user is not None else _DECOY_HASH
    matches = yield from run_in_thread(check_password, password, stored)
    return matches and user is not None

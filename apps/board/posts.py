"""The board itself: the list of posts (newest first, a page at a time;
with the status panel above them when asked, ``?panel=1``) and posting,
from the page's form or as JSON."""

from __future__ import annotations

from typing import Any

from corofw import Coro, HTTPError, Request, Response, Router
from corofw.web import UploadFile

from .context import Board, require_user
from .db import Post
from .images import check_image, remove_image, store_image


def parse_post_number(raw: str | None, name: str) -> int | None:
    """A post number from the query string (None when absent); a 400
    naming the parameter when it is not a whole number >= 1."""
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise HTTPError(400, f"{name} must be a post number (a whole number from 1), "
                             f"not {raw[:40]!r}.")
    return int(raw)


def post_json(post: Post) -> dict[str, Any]:
    """A post as the JSON API gives it."""
    return {"id": post.id, "author": post.author, "body": post.body,
            "image": f"/media/{post.image}" if post.image else None,
            "created_at": post.created_at.isoformat()}


def make_routes(board: Board) -> Router:
    """``/``, ``/posts`` and ``/api/posts``."""
    routes = Router()
    settings = board.settings
    store = board.store

    def one_page(request: Request) -> Coro[tuple[list[Post], int | None]]:
        before = parse_post_number(request.query.get("before"), "before")
        posts = yield from store.newest_posts(settings.page_size + 1, before)
        older = posts[settings.page_size - 1].id if len(posts) > settings.page_size else None
        return posts[:settings.page_size], older

    def check_text(body: Any, has_image: bool) -> str:
        text = body.strip() if isinstance(body, str) else ""
        if not text and not has_image:
            raise HTTPError(400, "A post needs some text or an image.")
        if len(text) > settings.max_post_chars:
            raise HTTPError(413, f"A post is at most {settings.max_post_chars} characters; "
                                 f"this one has {len(text)}.")
        return text

    def publish(author_id: int, text: str, upload: UploadFile | None) -> Coro[int]:
        image = None
        if upload is not None:
            extension = check_image(upload, settings.max_image_bytes)
            image = yield from store_image(upload, settings.media_dir, extension)
        try:
            return (yield from store.add_post(author_id, text, image))
        except BaseException:
            if image is not None:
                remove_image(settings.media_dir, image)
            raise

    @routes.get("/")
    def index(request):
        require_user(request)
        posts, older = yield from one_page(request)
        first_page = not request.query.get("before")
        panel = (yield from board.status.collect()) if request.query.get("panel") == "1" \
            else None
        return board.page(request, "index.html", posts=posts, older=older, live=first_page,
                          newest=posts[0].id if posts else 0, panel=panel)

    @routes.post("/posts", stream_body=True)  # an image goes to a temporary file as it comes
    def create(request):
        user = require_user(request)
        form = yield from request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile) or (upload.size == 0 and not upload.filename):
            upload = None  # the file input was left empty
        text = check_text(form.get("body"), upload is not None)
        yield from publish(user["uid"], text, upload)
        return Response.redirect("/", 303)

    @routes.get("/api/posts")
    def api_list(request):
        require_user(request)
        posts, older = yield from one_page(request)
        return {"posts": [post_json(post) for post in posts], "older": older}

    @routes.post("/api/posts")
    def api_create(request):
        user = require_user(request)
        data = request.json()
        if not isinstance(data, dict):
            raise HTTPError(400, "Send a JSON object such as {\"body\": \"hello\"}.")
        text = check_text(data.get("body"), False)
        post_id = yield from publish(user["uid"], text, None)
        return {"id": post_id}, 201

    return routes

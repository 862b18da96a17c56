"""Jinja2 templates rendered to responses, autoescaped."""

from __future__ import annotations

from types import GeneratorType

import pytest

jinja2 = pytest.importorskip("jinja2", reason="Jinja2 (the templates extra) is not installed")

from corofw import Request, Router, run  # noqa: E402
from corofw.web.csrf import csrf_middleware  # noqa: E402
from corofw.web.templates import Templates  # noqa: E402


@pytest.fixture
def templates(tmp_path):
    (tmp_path / "hello.html").write_text("<h1>Hello, {{ name }}!</h1>{{ trusted|safe }}")
    (tmp_path / "plain.txt").write_text("{{ name }}")
    (tmp_path / "form.html").write_text(
        '<input type="hidden" name="csrf_token" value="{{ csrf_token(request) }}">')
    (tmp_path / "base.html").write_text("<main>{% block body %}{% endblock %}</main>")
    (tmp_path / "child.html").write_text(
        '{% extends "base.html" %}{% block body %}{{ name }}{% endblock %}')
    return Templates(tmp_path)


def test_render_escapes_values(templates):
    response = templates.render("hello.html", name="<script>alert(1)</script>",
                                trusted="<b>ok</b>")
    assert response.status == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert response.body.decode() == \
        "<h1>Hello, &lt;script&gt;alert(1)&lt;/script&gt;!</h1><b>ok</b>"


def test_every_extension_is_escaped(templates):
    assert templates.render_text("plain.txt", name="a & b") == "a &amp; b"


def test_status_headers_content_type_and_inheritance(templates):
    response = templates.render("child.html", 404, {"x-page": "child"}, "text/plain", name="é")
    assert (response.status, response.headers["x-page"], response.content_type) == \
        (404, "child", "text/plain")
    assert response.body == "<main>é</main>".encode()


def test_a_missing_template_is_an_error_naming_it(templates):
    with pytest.raises(jinja2.TemplateNotFound, match="nope.html"):
        templates.render("nope.html")


def test_autoescape_cannot_be_turned_off(tmp_path):
    with pytest.raises(ValueError, match="always autoescape"):
        Templates(tmp_path, autoescape=False)


def test_csrf_token_in_a_template(templates):
    routes = Router()
    routes.middleware(csrf_middleware(["k" * 32]))

    @routes.get("/form")
    def form(request):
        return templates.render("form.html", request=request)

    response = routes.handle(Request("GET", "/form"))
    if type(response) is GeneratorType:
        response = run(response)
    token = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert f'value="{token}"' in response.body.decode()

"""Jinja2 templates rendered to responses (``pip install corofw[templates]``)::

    from corofw.web.templates import Templates

    templates = Templates("templates")

    @routes.get("/hello/{name}")
    def hello(request, name):
        return templates.render("hello.html", request=request, name=name)

Autoescaping is on for every template, whatever its extension: a value
such as ``<script>`` is written as ``&lt;script&gt;`` unless the template
marks it ``|safe``. Templates are loaded from disk on first use and cached
(reloaded when the file changes). Rendering runs on the event loop: keep
templates to formatting, and fetch their data before.

This module needs the ``jinja2`` package; importing it without that
package raises ``ImportError`` saying how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..http.messages import Response
from .csrf import csrf_token

try:
    import jinja2
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("corofw.web.templates needs Jinja2: pip install 'corofw[templates]'") \
        from exc


class Templates:
    """Templates from ``directory`` (or several, searched in order).

    ``env_options`` go to ``jinja2.Environment`` (``trim_blocks``,
    ``extensions``...); ``autoescape`` cannot be turned off there
    (``ValueError``). The environment is ``self.env``: add filters and
    globals to it. ``csrf_token(request)`` is a global, for forms under
    :func:`~corofw.web.csrf.csrf_middleware`."""

    def __init__(self, directory: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                 **env_options: Any) -> None:
        if "autoescape" in env_options:
            raise ValueError("Templates always autoescape; mark trusted values |safe or "
                             "wrap them in markupsafe.Markup instead")
        if isinstance(directory, (str, os.PathLike)):
            directory = [directory]
        loader = jinja2.FileSystemLoader([os.fspath(path) for path in directory])
        self.env = jinja2.Environment(loader=loader, autoescape=True, **env_options)
        self.env.globals["csrf_token"] = csrf_token

    def render_text(self, template_name: str, **context: Any) -> str:
        """The template rendered with ``context``, as text;
        ``jinja2.TemplateNotFound`` if there is no such template."""
        return self.env.get_template(template_name).render(context)

    def render(self, template_name: str, status: int = 200, headers: Any = None,
               content_type: str = "text/html; charset=utf-8", **context: Any) -> Response:
        """A :class:`Response` with the template rendered with ``context``
        (UTF-8, ``text/html`` unless ``content_type`` says otherwise)."""
        return Response(self.render_text(template_name, **context).encode(), status, headers,
                        content_type)

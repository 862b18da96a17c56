"""Router edge cases: url_for must never build a link that leaves the site,
and error handlers follow the precedence their docstring states."""

from __future__ import annotations

import pytest
from live import RawClient

from corofw import Router
from corofw.testing import serve_in_thread


@pytest.mark.xfail(strict=True, reason="PathPattern.build lets a path value that starts with "
                   "'/' make a '//host' path: url_for('spa', path='/evil.com') gives "
                   "'//evil.com', a scheme-relative URL to another host (Starlette gives "
                   "'/%2Fevil.com')")
def test_url_for_never_builds_a_scheme_relative_url():
    routes = Router()
    routes.add_route("/{path:path}", lambda request, path: path, name="spa")
    try:
        url = routes.url_for("spa", path="/evil.com")
    except ValueError:
        return  # refusing the value is as good as encoding it
    assert not url.startswith("//"), url


def test_url_for_keeps_other_path_values_inside_the_site():
    routes = Router()
    routes.add_route("/files/{path:path}", lambda request, path: path, name="files")
    assert routes.url_for("files", path="/evil.com") == "/files//evil.com"
    assert routes.url_for("files", path="\\evil.com") == "/files/%5Cevil.com"


@pytest.mark.xfail(strict=True, reason="error_handler's docstring says an HTTPError keeps its "
                   "status unless a handler is registered for its status, HTTPError or a "
                   "subclass of it; an error_handler(ValueError) still takes MalformedBody "
                   "(a 400 from request.json()) and answers it with its own status")
def test_a_value_error_handler_leaves_malformed_bodies_their_400(no_leaks):
    routes = Router()

    @routes.post("/json")
    def read_json(request):
        return {"got": request.json()}

    @routes.error_handler(ValueError)
    def domain_error(request, exc):
        return "domain rule broken", 422

    with serve_in_thread(routes) as server, RawClient(server.port) as client:
        response = client.request("POST", "/json", b"{not json")
    assert response.status == 400

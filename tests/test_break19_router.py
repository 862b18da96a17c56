"""Router edge cases: url_for must never build a link that leaves the site,
and error handlers follow the precedence their docstring states."""

from __future__ import annotations

from types import GeneratorType

from live import RawClient

from corofw import HTTPError, MalformedBody, Request, Router, run
from corofw.testing import serve_in_thread


def test_url_for_never_builds_a_scheme_relative_url(no_leaks):
    routes = Router()
    routes.add_route("/{path:path}", lambda request, path: path, name="spa")
    url = routes.url_for("spa", path="/evil.com")
    assert url == "/%2Fevil.com"
    with serve_in_thread(routes) as server, RawClient(server.port) as client:
        response = client.request("GET", url)
    assert response.body == b"/evil.com"  # the link leads back to the same value


def test_url_for_keeps_other_path_values_inside_the_site():
    routes = Router()
    routes.add_route("/files/{path:path}", lambda request, path: path, name="files")
    assert routes.url_for("files", path="/evil.com") == "/files//evil.com"
    assert routes.url_for("files", path="\\evil.com") == "/files/%5Cevil.com"


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


def test_http_errors_go_to_the_most_specific_http_handler():
    routes = Router()

    @routes.post("/json")
    def read_json(request):
        return {"got": request.json()}

    @routes.post("/teapot")
    def teapot(request):
        raise HTTPError(418)

    @routes.post("/domain")
    def domain(request):
        raise ValueError("rule")

    @routes.error_handler(ValueError)
    def domain_error(request, exc):
        return "domain rule broken", 422

    @routes.error_handler(HTTPError)
    def any_http(request, exc):
        return f"http {exc.status}", exc.status

    @routes.error_handler(MalformedBody)
    def malformed(request, exc):
        return "malformed", 400

    def status_and_body(path):
        response = routes.handle(Request("POST", path, body=b"{not json"))
        if isinstance(response, GeneratorType):
            response = run(response)
        return response.status, response.body

    assert status_and_body("/json") == (400, b"malformed")
    assert status_and_body("/teapot") == (418, b"http 418")
    assert status_and_body("/domain") == (422, b"domain rule broken")

"""Hello world: ``corofw run apps.hello:routes``."""

from corofw import Response, Router, sleep

routes = Router()


@routes.get("/")
def hello(request):
    return "Hello, World!"


@routes.post("/echo")
def echo(request):
    return Response(request.body, content_type=request.content_type or "application/octet-stream")


@routes.get("/slow")
def slow(request):
    yield from sleep(0.5)
    return "slow\n"

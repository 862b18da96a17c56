"""The slow-reader benchmark's app: hello's routes plus ``GET /big``.

``GET /big`` answers 4 MiB of bytes built once, at import, so every
response shares one buffer and the server's memory shows only what it keeps
per connection: ``corofw run benchmarks.peers.big_app:routes``.
"""

from apps import hello
from corofw import Response, Router

BIG_SIZE = 4 << 20
BIG = bytes(range(256)) * (BIG_SIZE // 256)

routes = Router()
for route in hello.routes.routes:
    routes.add_route(route.full_path, route.handler, route.methods)


@routes.get("/big")
def big(request):
    return Response(BIG, content_type="application/octet-stream")

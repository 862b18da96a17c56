"""The soak benchmark's app: hello's routes (``GET /``, ``POST /echo``) and
the fan-out routes (``GET /fanout``, calling ``BACKEND_URL``) in one router:
``BACKEND_URL=http://127.0.0.1:9001 corofw run benchmarks.peers.soak_app:routes``.
"""

from apps import fanout, hello
from corofw import Router

routes = Router()
for route in hello.routes.routes:
    routes.add_route(route.full_path, route.handler, route.methods)
routes.mount("", fanout.routes)

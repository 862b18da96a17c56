"""An app with metrics for subprocess tests:
``COROFW_METRICS_DIR=... corofw run tests.metrics_app:routes --workers 2``.
Each worker writes its numbers after every request (``write_interval=0``),
so a scrape that follows a request sees it whichever worker answers."""

import os

from corofw import Router
from corofw.web.metrics import Metrics

metrics = Metrics(write_interval=0)
routes = Router()
metrics.install(routes)


@routes.get("/pid")
def pid(request):
    return str(os.getpid())

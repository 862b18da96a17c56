"""A static file and a streamed upload on corofw:
``BENCH_FILES_DIR=dir corofw run benchmarks.peers.corofw_files:routes``.

``GET /static/<name>`` serves the files under ``$BENCH_FILES_DIR``
(``routes.static``, sent with ``os.sendfile``); ``POST /upload`` reads a
``multipart/form-data`` body as it arrives (``stream_body=True``), its
file part spooled to a temporary file past 1 MiB, and answers with the
form's field names and the size of each file part."""

import os

from corofw import Router
from corofw.web import FormLimits, UploadFile

routes = Router()
routes.static("/static", os.environ["BENCH_FILES_DIR"])

UPLOAD_LIMIT = 1 << 30  # 1 GiB, this route only


@routes.post("/upload", stream_body=True, max_body_size=UPLOAD_LIMIT)
def upload(request):
    form = yield from request.form(FormLimits(max_file_size=UPLOAD_LIMIT))
    return {name: value.size if isinstance(value, UploadFile) else len(value)
            for name, value in form.items()}

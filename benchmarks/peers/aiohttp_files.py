"""A static file and a streamed upload on aiohttp, one process:
``BENCH_FILES_DIR=dir python aiohttp_files.py PORT``.

``GET /static/<name>`` answers with ``web.FileResponse`` (sent with
``sendfile``); ``POST /upload`` reads the ``multipart/form-data`` body
part by part (``request.multipart()``), writing each file part to a
temporary file in 64 KiB chunks, and answers with the field names and the
size of each file part."""

import os
import sys
import tempfile
from pathlib import Path

from aiohttp import web

DIRECTORY = Path(os.environ["BENCH_FILES_DIR"]).resolve()
CHUNK = 1 << 16


async def static(request):
    path = (DIRECTORY / request.match_info["name"]).resolve()
    if path.parent != DIRECTORY or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def upload(request):
    reader = await request.multipart()
    sizes = {}
    while (part := await reader.next()) is not None:
        if part.filename is None:
            sizes[part.name] = len(await part.read())
            continue
        size = 0
        with tempfile.TemporaryFile() as file:
            while chunk := await part.read_chunk(CHUNK):
                file.write(chunk)
                size += len(chunk)
        sizes[part.name] = size
    return web.json_response(sizes)


app = web.Application()
app.router.add_get("/static/{name}", static)
app.router.add_post("/upload", upload)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)

"""A small HTTP/1.1 server on trio + h11, for the benchmarks' trio column.

``python trio_h11.py hello PORT`` answers ``GET /`` with Hello, World!;
``python trio_h11.py fanout PORT`` serves ``GET /fanout`` from
trio_fanout.py (ten concurrent backend calls through httpx.AsyncClient).
One task per connection, keep-alive, as corofw's own server does.
"""

import json
import sys

import h11
import trio

BODY = b"Hello, World!"


async def hello(target: bytes) -> tuple[int, bytes, bytes]:
    return 200, b"text/plain; charset=utf-8", BODY


async def fanout(target: bytes) -> tuple[int, bytes, bytes]:
    from trio_fanout import fanout as run_fanout

    path, _, query = target.partition(b"?")
    if path != b"/fanout":
        return 404, b"text/plain", b"not found"
    result = await run_fanout(query.decode())
    return 200, b"application/json", json.dumps(result).encode()


async def serve_connection(stream: trio.SocketStream, app) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                while not isinstance(conn.next_event(), (h11.EndOfMessage, h11.PAUSED)):
                    pass
                status, content_type, body = await app(event.target)
                headers = [(b"content-type", content_type),
                           (b"content-length", str(len(body)).encode())]
                await stream.send_all(conn.send(h11.Response(status_code=status,
                                                             headers=headers)))
                await stream.send_all(conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await stream.aclose()


async def main(kind: str, port: int) -> None:
    app = hello if kind == "hello" else fanout

    async def handler(stream: trio.SocketStream) -> None:
        await serve_connection(stream, app)

    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    trio.run(main, sys.argv[1], int(sys.argv[2]))

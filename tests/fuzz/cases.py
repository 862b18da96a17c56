"""The property the parser fuzzers check: requests or ProtocolError, never
another exception, and the same outcome however the bytes are split."""

from corofw.http.parser import Limits, ProtocolError, RequestParser

LIMITS = Limits(max_request_line=512, max_header_bytes=2048, max_headers=20,
                max_body_bytes=4096)


def outcome(data: bytes, piece: int) -> list:
    """What the parser makes of ``data`` fed in ``piece``-byte pieces."""
    parser = RequestParser(LIMITS)
    seen: list = []
    try:
        for start in range(0, len(data), piece):
            parser.feed(data[start:start + piece])
            while (request := parser.next_request()) is not None:
                seen.append((request.method, request.target, request.version,
                             request.headers.items(), request.body, request.keep_alive))
    except ProtocolError as exc:
        seen.append(("error", exc.status))
    return seen


def check_input(data: bytes) -> None:
    """The first byte picks the piece size (1-16); the rest is the input."""
    if not data:
        return
    piece = data[0] % 16 + 1
    payload = data[1:]
    whole = outcome(payload, max(len(payload), 1))
    pieces = outcome(payload, piece)
    if whole != pieces:
        raise AssertionError(f"fed whole: {whole!r}\nfed in {piece}-byte pieces: {pieces!r}")

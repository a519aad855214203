"""Issue 26, item 1: the key and the declared size are checked before any body byte is read,
against a real uvicorn on a loopback port spoken to over a raw socket: an unauthenticated
upload is answered 401 at once and nothing is written to the temporary folder; an
authenticated body over its endpoint's limit is answered 413, declared or chunked."""

from __future__ import annotations

import socket
import tempfile
import threading
import time

import pytest

from lrface.pipeline import FacePipeline
from lrface.search.store import SqliteStore
from lrface.service.app import ServiceConfig, create_app
from tests.test_pipeline import ColourEncoder, SquareDetector

KEY = "guard-test-key-0123456789"
CHUNK = b"x" * 65536


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The app on a free loopback port in a thread, its temporary files in ``tmp_path/tmp``."""
    import uvicorn

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    store = SqliteStore.create(tmp_path / "g.db", "teacher", 4)
    pipe = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)
    config = ServiceConfig(api_key=KEY, max_upload_bytes=1024 * 1024)
    app = create_app(store, pipe, config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield sock.getsockname()[1], spool
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


def _head(port: int, headers: dict[str, str], path: str = "/api/search") -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return conn


def _status(conn: socket.socket) -> tuple[int, bytes]:
    """The status and everything the server sent until it closed the connection."""
    data = b""
    while part := conn.recv(65536):
        data += part
    return int(data.split(b" ", 2)[1]), data


def _send_chunks(conn: socket.socket, count: int) -> int:
    """Send up to ``count`` 64 KiB chunks; how many went before the server closed."""
    for sent in range(count):
        try:
            conn.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
        except (BrokenPipeError, ConnectionResetError):
            return sent
    return count


def _spooled(spool) -> int:
    return sum(p.stat().st_size for p in spool.rglob("*") if p.is_file())


MULTIPART = "multipart/form-data; boundary=xyz"


def test_no_key_is_refused_before_the_body_is_read(server):
    port, spool = server
    # 70 MiB declared: the answer comes from the headers alone, no byte of the body sent
    start = time.monotonic()
    conn = _head(port, {"Content-Type": MULTIPART, "Content-Length": str(70 * 2**20)})
    status, data = _status(conn)
    assert status == 401 and b"missing or wrong API key" in data
    assert time.monotonic() - start < 5
    conn.close()
    # chunked, no key: 401 before any chunk; the chunks that follow are never stored
    conn = _head(port, {"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"})
    status, _ = _status(conn)
    assert status == 401
    _send_chunks(conn, 64)
    conn.close()
    time.sleep(0.2)
    assert _spooled(spool) == 0


def test_a_body_over_the_endpoint_s_limit_is_refused_413(server):
    port, spool = server
    auth = {"X-API-Key": KEY, "Content-Type": MULTIPART}
    conn = _head(port, auth | {"Content-Length": str(250 * 2**20)})
    status, data = _status(conn)
    assert status == 413 and b"request too large" in data
    conn.close()
    # chunked past the limit (1 MiB + form overhead): refused while streaming, not at the end
    conn = _head(port, auth | {"Transfer-Encoding": "chunked"})
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    sent = _send_chunks(conn, 4000)  # 250 MiB offered
    status, data = _status(conn)
    assert status == 413 and b"request too large" in data
    assert sent < 4000  # the server stopped reading and closed well before the end
    conn.close()
    assert _spooled(spool) <= 2 * 2**20

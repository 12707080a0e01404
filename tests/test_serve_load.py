"""The server under load, against a real uvicorn on 127.0.0.1: a whole-request deadline (head and body), JSON
answers to malformed HTTP, the bounds on the work in flight (503 + Retry-After + JSON message) and /health while
predicts are in flight. Every client loop is bounded and stops by itself."""

import contextlib
import json
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="fastapi is not installed (pip install 'sketch-r2cnn')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'sketch-r2cnn')")

DRAWING = [[[10, 60, 110, 160], [10, 80, 10, 90]], [[30, 90, 140], [50, 52, 50]]]
TIMEOUT = 1.0  # the request deadline of the servers here (seconds)


@pytest.fixture(scope="module")
def recognizer(tiny_r2cnn_checkpoint):
    from r2cnn.engine.predict import Predictor
    from r2cnn.serve import Recognizer

    return Recognizer(Predictor(str(tiny_r2cnn_checkpoint)), source="tiny.pt")


@contextlib.contextmanager
def serving(app, request_timeout: float = TIMEOUT):
    """``app`` under uvicorn (the project's protocol and limits) in a thread; yields its port."""
    from r2cnn.serve.server import listen, make_server

    sock = listen("127.0.0.1", 0)
    server = make_server(app, request_timeout=request_timeout)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _answer(conn: socket.socket, wait: float = 10.0) -> tuple[bytes, bool]:
    """Everything the server sends on ``conn`` until it closes it (or ``wait`` s pass): (bytes, closed)."""
    conn.settimeout(wait)
    data = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _status_and_json(data: bytes) -> tuple[int, dict, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def _request(port: int, method: str, path: str, body: bytes = b"", wait: float = 30.0) -> tuple[int, dict, dict]:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data, _ = _answer(conn, wait)
    return _status_and_json(data)


def _post_head(length: int) -> bytes:
    return (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_a_stalled_or_trickled_body_gets_408_and_is_closed_within_the_timeout(recognizer):
    from r2cnn.serve import create_app

    with serving(create_app(recognizer)) as port:
        stalled = socket.create_connection(("127.0.0.1", port))
        start = time.monotonic()
        stalled.sendall(_post_head(1000) + b" " * 999)  # one byte short, then nothing
        trickled = socket.create_connection(("127.0.0.1", port))
        trickled.sendall(_post_head(1000))
        trickled.settimeout(0.05)
        trickle_closed = None
        for _ in range(200):  # a byte every ~50 ms: each one used to reset uvicorn's idle timer
            try:
                trickled.sendall(b" ")
                if trickled.recv(65536) == b"":
                    trickle_closed = time.monotonic() - start
                    break
            except socket.timeout:
                continue
            except OSError:
                trickle_closed = time.monotonic() - start
                break
        data, closed = _answer(stalled)
        stalled_closed = time.monotonic() - start
        assert closed and stalled_closed < TIMEOUT + 3, stalled_closed
        status, headers, body = _status_and_json(data)
        assert status == 408 and headers["connection"] == "close", data
        assert "not received within 1 s" in body["message"], body
        assert trickle_closed is not None and trickle_closed < TIMEOUT + 3, trickle_closed
        # a request on time is answered, on a connection opened after the others
        assert _request(port, "POST", "/api/predict", json.dumps({"drawing": DRAWING}).encode())[0] == 200
        stalled.close()
        trickled.close()


def test_a_request_received_in_time_is_not_cut_off_while_it_waits_for_the_model(recognizer, monkeypatch):
    """The deadline is on receiving the request, not on answering it: a predict slower than the timeout ends."""
    from r2cnn.serve import create_app

    slow = recognizer.recognize

    def slower(*args, **kwargs):
        time.sleep(TIMEOUT + 0.5)
        return slow(*args, **kwargs)

    monkeypatch.setattr(recognizer, "recognize", slower)
    with serving(create_app(recognizer)) as port:
        status, _, body = _request(port, "POST", "/api/predict", json.dumps({"drawing": DRAWING}).encode())
    assert status == 200 and body["top"], body


@pytest.mark.parametrize("head, status, why", [
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", 400, "bad Content-Length"),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n", 400, "multiple Host"),
    (b"GET /health HTTP/1.1\r\n\r\n", 400, "Missing mandatory Host"),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000, 431, "Receive buffer too long"),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding"),
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request"),
], ids=["content-length abc", "two hosts", "no host", "head too large", "transfer-encoding", "garbage"])
def test_malformed_http_gets_the_json_message(recognizer, head, status, why):
    from r2cnn.serve import create_app

    with serving(create_app(recognizer)) as port:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(head)
            data, closed = _answer(conn)
        got, headers, body = _status_and_json(data)
        assert closed and got == status and headers["content-type"] == "application/json", data
        assert body["message"].startswith("malformed HTTP request: ") and why in body["message"], body
        assert "\n" not in body["message"]
        assert _request(port, "GET", "/health")[0] == 200  # the server carries on


class Gate:
    """Holds calls of a function until opened; counts the calls waiting."""

    def __init__(self, function):
        self.function, self.opened, self.waiting = function, threading.Event(), 0
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.waiting += 1
        self.opened.wait(30)
        return self.function(*args, **kwargs)

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while self.waiting < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.waiting >= n, (self.waiting, n)


def test_predicts_and_parses_beyond_the_bounds_get_503_while_health_answers(recognizer, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from r2cnn.serve import Limits, app as app_module, create_app
    from r2cnn.serve.app import WorkLimit

    predicts = Gate(recognizer.recognize)
    parses = Gate(app_module._parse_sketch)
    monkeypatch.setattr(recognizer, "recognize", predicts)
    monkeypatch.setattr(app_module, "_parse_sketch", parses)
    drawing = json.dumps({"drawing": DRAWING}).encode()
    ndjson = json.dumps({"word": "v", "drawing": DRAWING}).encode()
    app = create_app(recognizer, Limits(max_predicts=2, max_parses=1, retry_after=3))
    with serving(app) as port, ThreadPoolExecutor(3) as pool:
        held = [pool.submit(_request, port, "POST", "/api/predict", drawing) for _ in range(2)]
        held.append(pool.submit(_request, port, "POST", "/api/parse?format=ndjson", ndjson))
        predicts.wait_for(1)  # one predicts, the other waits for it (one_at_a_time)
        parses.wait_for(1)
        _wait_until(lambda: _middleware(app, WorkLimit).in_flight == {"/api/predict": 2, "/api/parse": 1})
        for path, body in (("/api/predict", drawing), ("/api/parse?format=ndjson", ndjson)):
            status, headers, answer = _request(port, "POST", path, body)
            assert status == 503 and headers["retry-after"] == "3", (path, status, answer)
            assert "server busy" in answer["message"] and "retry in 3 s" in answer["message"], answer
        health = _request(port, "GET", "/health")  # answered while every admitted request waits
        assert health[0] == 200 and health[2]["status"] == "ok"
        assert not any(f.done() for f in held)
        predicts.opened.set()
        parses.opened.set()
        assert [f.result(timeout=60)[0] for f in held] == [200, 200, 200]
        assert _request(port, "POST", "/api/predict", drawing)[0] == 200  # the slots are given back


def _middleware(app, kind):
    layer = app.middleware_stack
    while not isinstance(layer, kind):
        layer = layer.app
    return layer


def _wait_until(condition) -> None:
    deadline = time.monotonic() + 30
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_bodies_in_flight_beyond_the_byte_bound_get_503(recognizer):
    from r2cnn.serve import Limits, create_app
    from r2cnn.serve.app import BodyLimit

    app = create_app(recognizer, Limits(max_body_bytes=1024, max_buffered_bytes=2048))
    with serving(app, request_timeout=30) as port:
        first, second = (socket.create_connection(("127.0.0.1", port)) for _ in range(2))
        assert _request(port, "GET", "/health")[0] == 200  # the app's middleware is built
        bodies = _middleware(app, BodyLimit)
        first.sendall(_post_head(1024) + b" " * 10)
        second.sendall(_post_head(1024) + b" " * 10)
        _wait_until(lambda: bodies.buffered == 2048)  # both heads read
        status, headers, body = _request(port, "POST", "/api/predict", b" " * 600)
        assert status == 503 and headers["retry-after"] == "1", body
        assert "request bodies in flight hold 2048 bytes" in body["message"]
        first.close()  # its bytes are given back
        _wait_until(lambda: bodies.buffered == 1024)
        status, _, body = _request(port, "POST", "/api/predict", json.dumps({"drawing": DRAWING}).encode())
        assert status == 200, body
        second.close()


def test_limits_are_checked():
    from r2cnn.errors import R2CNNError
    from r2cnn.serve import Limits

    with pytest.raises(R2CNNError, match="max_predicts"):
        Limits(max_predicts=0)
    with pytest.raises(R2CNNError, match="max_buffered_bytes"):
        Limits(max_body_bytes=10_000, max_buffered_bytes=5_000)


def test_memory_is_handed_back_once_no_request_with_a_body_is_in_flight(recognizer, monkeypatch):
    from fastapi.testclient import TestClient

    from r2cnn.serve import create_app, server
    from r2cnn.serve.app import BodyLimit

    trims = []
    monkeypatch.setattr(server, "release_memory", lambda: trims.append(time.monotonic()))
    monkeypatch.setattr(BodyLimit, "TRIM_AFTER", 0.2)
    with TestClient(create_app(recognizer)) as client:
        assert client.get("/health").status_code == 200
        time.sleep(0.5)
        assert trims == []  # a GET has no body: nothing to hand back
        assert client.post("/api/predict", json={"drawing": DRAWING}).status_code == 200
        _wait_until(lambda: len(trims) == 1)
        time.sleep(0.5)
        assert len(trims) == 1  # once per quiet spell, not again and again


def test_the_launcher_starts_serve_without_the_training_malloc_thresholds():
    from r2cnn.launch import LAUNCH_ENV, launch_env

    assert launch_env("serve") == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert launch_env("train") == LAUNCH_ENV and launch_env("predict") == {}

"""Running the app: a listening socket, uvicorn in the foreground, or ``r2cnn serve`` as a child process.

The socket is bound before uvicorn starts, so port 0 (any free port) works and the address printed is the one
served, with no window in which another process could take the port.
"""

from __future__ import annotations

import contextlib
import functools
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator

from r2cnn.errors import R2CNNError

URL_PREFIX = "serving "  # the first line ``r2cnn serve`` prints: ``serving http://HOST:PORT/ ...``


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``(host, port)`` (port 0: a free one), to hand to :func:`run`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise R2CNNError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    # Listening from now on: connections made before uvicorn has started wait in the backlog, not refused.
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


# Slow clients: a connection must send a whole request, head and body, within REQUEST_TIMEOUT seconds of connecting
# (or of its previous answer); an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT; a request head is at
# most MAX_HEAD_BYTES.
REQUEST_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_HEAD_BYTES = 16 * 1024


def loopback_hosts(host: str, port: int) -> list[str] | None:
    """The ``Host`` headers a server on ``host``:``port`` accepts: on a loopback address its own names with the
    port (browsers leave out port 80); elsewhere None (any: the server is meant to be reached by other names)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    names = ["127.0.0.1", "localhost", "[::1]"]
    return [f"{n}:{port}" for n in names] + (names if port == 80 else [])


def _error_body(message: str) -> bytes:
    """The JSON body of every error answer, the app's and the HTTP layer's: ``{"detail": ..., "message": ...}``."""
    import json

    return json.dumps({"detail": message, "message": message}).encode()


def _protocol(request_timeout: float):
    """uvicorn's h11 protocol with a deadline on each whole request and JSON answers from the HTTP layer.

    - Deadline: a connection has ``request_timeout`` seconds from connecting, or from its previous answer, to send a
      request's head and body (uvicorn's own keep-alive timer is cancelled by any byte received, so a client
      trickling a header or a body would hold its connection for ever). A connection without a whole head by then
      is closed; one still sending its body gets 408 with a JSON ``message``, then is closed. A request received in
      time is never cut off while the app works on it (the app bounds that work itself).
    - Malformed HTTP (``Content-Length: abc``, two ``Host`` headers, a head over MAX_HEAD_BYTES, ...) is refused by
      h11 before the app sees it: uvicorn's answer is a plain-text 400; here it is h11's status (400, 431 for a head
      too large, 501 for an unsupported Transfer-Encoding) with the JSON ``message`` saying what h11 found, and the
      connection is closed.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

    class RequestDeadline(H11Protocol):
        _deadline = None
        _protocol_error = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            next_event = self.conn.next_event

            def next_event_noting_errors():  # uvicorn drops h11's reason; keep it for the answer
                try:
                    return next_event()
                except h11.RemoteProtocolError as e:
                    self._protocol_error = e
                    raise

            self.conn.next_event = next_event_noting_errors

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc):
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self):
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(request_timeout, self._expired)

        def _expired(self):
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is None or cycle.response_complete:  # no request head since armed
                self.transport.close()
            elif cycle.more_body:  # the head came, the body is not all here
                if not cycle.response_started:
                    cycle.disconnected = True  # the app's receive() now ends, its answer goes nowhere
                    cycle.message_event.set()
                    self._answer(408, f"request not received within {request_timeout:g} s of the connection "
                                      "or of the previous answer")
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            error = self._protocol_error
            status = getattr(error, "error_status_hint", 400)
            reason = " ".join(str(error or msg).split())[:200]
            self._answer(status, f"malformed HTTP request: {reason}")
            self.transport.close()

        def _answer(self, status: int, message: str) -> None:
            """Write a JSON error answer straight to the transport (the connection closes after it)."""
            if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return  # an answer has begun already: closing is all that is left
            body = _error_body(message)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            try:
                out = self.conn.send(h11.Response(status_code=status, headers=headers,
                                                  reason=STATUS_PHRASES.get(status, b"")))
                out += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                return
            self.transport.write(out)

    return RequestDeadline


def release_memory() -> None:
    """Hand the memory this process has freed back to the OS: glibc's ``malloc_trim(0)``, which returns the free
    pages of every malloc arena (the main one and each thread's), whatever ``MALLOC_TRIM_THRESHOLD_`` says; nothing
    where the C library has no ``malloc_trim`` (macOS, musl)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def make_server(app, log_level: str = "warning", request_timeout: float | None = None):
    """A ``uvicorn.Server`` for ``app`` with the slow-client limits above (``request_timeout``: seconds for a whole
    request, default REQUEST_TIMEOUT)."""
    import uvicorn

    timeout = REQUEST_TIMEOUT if request_timeout is None else request_timeout
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, http=_protocol(timeout),
                                         timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
                                         h11_max_incomplete_event_size=MAX_HEAD_BYTES))


def run(app, sock: socket.socket, log_level: str = "warning", request_timeout: float | None = None) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until interrupted."""
    make_server(app, log_level, request_timeout).run(sockets=[sock])


@contextlib.contextmanager
def serve_subprocess(checkpoint: str | None, *options: str, env: dict | None = None,
                     timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``r2cnn serve --checkpoint CHECKPOINT --host 127.0.0.1 --port 0 OPTIONS`` as a child process (no
    ``--checkpoint`` when it is None: ``OPTIONS`` name the model, e.g. ``--onnx F``); yields its base URL and the
    process once it is listening, and stops it afterwards. Its stderr goes to a temporary file, quoted in the error
    when it fails to start within ``timeout`` seconds."""
    model = [] if checkpoint is None else ["--checkpoint", str(checkpoint)]
    command = [sys.executable, "-m", "r2cnn", "serve", *model, "--host", "127.0.0.1", "--port", "0", *options]
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        try:
            yield _wait_for_url(proc, errors, timeout), proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _wait_for_url(proc: subprocess.Popen, errors, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(timeout=remaining):
                why = f"not listening after {timeout:.0f} s"
                break
            line = proc.stdout.readline()
            if not line:  # end of output: the process has ended
                why = f"exit status {proc.wait()}"
                break
            if line.startswith(URL_PREFIX):
                return line[len(URL_PREFIX):].split()[0]
    errors.seek(0)
    tail = " ".join(errors.read()[-2000:].split())
    raise R2CNNError(f"r2cnn serve did not start ({why}): {tail or 'no output'}")

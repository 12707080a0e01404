"""Running the app: a listening socket, uvicorn in the foreground, or ``r2cnn serve`` as a child process.

The socket is bound before uvicorn starts, so port 0 (any free port) works and the address printed is the one
served, with no window in which another process could take the port.
"""

from __future__ import annotations

import contextlib
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


# Slow clients: a connection must send a whole request head within HEAD_TIMEOUT seconds of connecting (or of its
# previous answer), an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT, a request head is at most
# MAX_HEAD_BYTES.
HEAD_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_HEAD_BYTES = 16 * 1024


def loopback_hosts(host: str, port: int) -> list[str] | None:
    """The ``Host`` headers a server on ``host``:``port`` accepts: on a loopback address its own names with the
    port (browsers leave out port 80); elsewhere None (any: the server is meant to be reached by other names)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    names = ["127.0.0.1", "localhost", "[::1]"]
    return [f"{n}:{port}" for n in names] + (names if port == 80 else [])


def _protocol():
    """uvicorn's h11 protocol with a deadline for each request head (uvicorn's own keep-alive timeout is cancelled
    by any byte received, so a client trickling a header would hold its connection for ever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadline(H11Protocol):
        _deadline = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc):
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self):
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(HEAD_TIMEOUT, self._expired)

        def _expired(self):
            waiting = self.cycle is None or self.cycle.response_complete  # no request head since armed
            if waiting and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadline


def make_server(app, log_level: str = "warning"):
    """A ``uvicorn.Server`` for ``app`` with the slow-client limits above."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, http=_protocol(),
                                         timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
                                         h11_max_incomplete_event_size=MAX_HEAD_BYTES))


def run(app, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on ``sock`` with uvicorn until interrupted."""
    make_server(app, log_level).run(sockets=[sock])


@contextlib.contextmanager
def serve_subprocess(checkpoint: str, *options: str, env: dict | None = None,
                     timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``r2cnn serve --checkpoint CHECKPOINT --host 127.0.0.1 --port 0 OPTIONS`` as a child process; yields
    its base URL and the process once it is listening, and stops it afterwards. Its stderr goes to a temporary
    file, quoted in the error when it fails to start within ``timeout`` seconds."""
    command = [sys.executable, "-m", "r2cnn", "serve", "--checkpoint", str(checkpoint), "--host", "127.0.0.1",
               "--port", "0", *options]
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

"""``r2cnn download``: full download, resume of a .part with Range, size mismatch and 404, on a local server."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r2cnn.cli import main
from r2cnn.data.download import QUICKDRAW_CLASSES, class_url, download_file, download_quickdraw, parse_classes
from r2cnn.errors import R2CNNError


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` (URL path -> bytes) with HEAD and single ``bytes=N-`` Range requests; paths in
    ``server.lie`` report a Content-Length 10 bytes too large in HEAD."""

    def _head(self):
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return None
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.server.ranges.append(start)
        extra = 10 if self.command == "HEAD" and self.path in self.server.lie else 0
        self.send_header("Content-Length", str(len(body) - start + extra))
        self.end_headers()
        return body[start:]

    def do_HEAD(self):
        self._head()

    def do_GET(self):
        body = self._head()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.lie, srv.ranges = {}, set(), []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}/full/"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_class_list_and_urls():
    assert len(QUICKDRAW_CLASSES) == 345 == len(set(QUICKDRAW_CLASSES)) and parse_classes("all") == QUICKDRAW_CLASSES
    assert parse_classes("cat, power outlet") == ["cat", "power outlet"]
    with pytest.raises(R2CNNError, match="unknown QuickDraw class.*catt"):
        parse_classes("cat,catt")
    base = "https://storage.googleapis.com/quickdraw_dataset/full/"
    assert class_url("power outlet", "simplified") == base + "simplified/power%20outlet.ndjson"
    assert class_url("cat", "raw") == base + "raw/cat.ndjson"
    assert class_url("cat", "bin") == base + "binary/cat.bin"
    assert class_url("cat", "npz") == "https://storage.googleapis.com/quickdraw_dataset/sketchrnn/cat.npz"


def test_full_download_and_rerun(server, tmp_path):
    server.files["/full/simplified/cat.ndjson"] = b'{"word": "cat"}\n' * 5000
    server.files["/full/simplified/power%20outlet.ndjson"] = b"x" * 123
    paths = download_quickdraw(["cat", "power outlet"], "simplified", tmp_path, base_url=server.base, progress=False)
    assert [p.name for p in paths] == ["cat.ndjson", "power outlet.ndjson"]
    assert paths[0].read_bytes() == server.files["/full/simplified/cat.ndjson"]
    assert not list(tmp_path.glob("*.part"))
    assert download_file(class_url("cat", "simplified", server.base), paths[0]) == "exists"


def test_resume_truncated_part(server, tmp_path):
    body = bytes(range(256)) * 4000
    server.files["/sketchrnn/cat.npz"] = body
    (tmp_path / "cat.npz.part").write_bytes(body[:300_000])
    assert download_file(class_url("cat", "npz", server.base), tmp_path / "cat.npz", progress=False) == "resumed"
    assert (tmp_path / "cat.npz").read_bytes() == body
    assert 300_000 in server.ranges  # the GET asked only for the missing tail


def test_size_mismatch_names_the_file(server, tmp_path):
    server.files["/full/binary/cat.bin"] = b"\0" * 1000
    server.lie.add("/full/binary/cat.bin")
    with pytest.raises(R2CNNError, match=r"cat\.bin: size mismatch: got 1000 bytes, the server says 1010"):
        download_quickdraw(["cat"], "bin", tmp_path, base_url=server.base, progress=False)
    assert not (tmp_path / "cat.bin").exists()


def test_404_and_cli(server, tmp_path, capsys):
    assert main(["download", "quickdraw", "--classes", "dog", "--format", "raw", "--out", str(tmp_path),
                 "--base-url", server.base]) == 2
    err = capsys.readouterr().err
    assert "raw/dog.ndjson: HTTP 404" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    server.files["/full/raw/dog.ndjson"] = b"{}\n"
    assert main(["download", "quickdraw", "--classes", "dog", "--format", "raw", "--out", str(tmp_path),
                 "--base-url", server.base]) == 0
    assert (tmp_path / "dog.ndjson").read_bytes() == b"{}\n"

"""The FastAPI application behind ``r2cnn serve``: the drawing page and a JSON API.

Endpoints (OpenAPI at ``/docs``, with Swagger UI served from the package, so it works offline; the schema itself at
``/openapi.json``):

- ``GET /``: the page (``static/index.html``; its script and style under ``/static``; ``/favicon.ico``);
- ``POST /api/predict``: a drawing in Quick, Draw! style, simplified ``{"drawing": [[xs, ys], ...], "top_k": 5}``
  or raw ``{"drawing": [[xs, ys, ts], ...]}``, or points ``{"points": [[x, y, pen_end], ...]}`` (any coordinate
  range; other fields, e.g. a whole ndjson record's ``word``, are ignored) -> the top-k classes and the attention
  at every point. The input contract and its messages are :mod:`r2cnn.strokes`', the same as ``Predictor.predict``
  and ``r2cnn.load(...).predict`` in Python;
- ``GET /api/classes``: the model's classes, whether it has per-point attention, and the exported model the page
  may run itself (:mod:`r2cnn.serve.browser`), served at ``GET /browser/model.onnx``;
- ``POST /api/parse?format=ndjson|svg``: a sketch file's bytes -> its drawing, read by :mod:`r2cnn.data.formats`
  (never evaluated or unpickled), for the page's "load sketch";
- ``GET /health``.

Bad input gets a 4xx answer with a one-line ``message``: a body over :attr:`Limits.max_body_bytes` is refused
(413) before it is parsed; malformed JSON, wrong shapes, non-numbers (``"5"`` included), NaN or infinity, an empty
drawing, too many strokes or points, a ``top_k`` that is not a whole number >= 1 get 422 naming the field, with the
message Python gives for the same input; a body that cannot be parsed at all (not UTF-8, nested too deeply, a
number of thousands of digits) gets 400, with its ``message`` too; on the loopback default, a ``Host`` header other
than the server's own names gets 400 (:class:`HostCheck`).

Under load (docs/architecture.md "Serving under load"): requests beyond the bounds of :class:`Limits` (predicts and
parses in flight, request bytes in flight) get 503 with ``Retry-After`` and a ``message`` before anything parses
them (:class:`WorkLimit`, :class:`BodyLimit`); a predict runs in the server's thread pool from its JSON body to its
answer, one at a time (:func:`one_at_a_time`, :func:`json_in_threads`), never on the event loop, so ``/health``
(on the event loop) answers during a burst. The HTTP layer's own limits (the request deadline, malformed HTTP) are
:mod:`r2cnn.serve.server`'s.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import threading
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from r2cnn.errors import R2CNNError, SketchFormatError
from r2cnn.serve.browser import BrowserModel
from r2cnn.strokes import INPUT, MAX_POINTS, MAX_STROKES

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = "/static/vendor/swagger-ui"  # vendored (its VENDORED.md)


@dataclass(frozen=True)
class Limits:
    """Request limits that a server may change (the drawing's shape limits are fixed by the schema).

    The work in flight is bounded (:class:`BodyLimit`, :class:`WorkLimit`): a request beyond a bound gets 503 with
    ``Retry-After: retry_after`` and a JSON ``message`` at once, before anything parses it."""

    # a drawing of MAX_POINTS points of short numbers (Quick, Draw!'s 0..255) fits; a raw record of as many
    # points with long float spellings may not, and gets the 413
    max_body_bytes: int = 2_000_000
    max_buffered_bytes: int = 64_000_000  # request bodies being received or worked on, all requests together
    max_predicts: int = 8  # /api/predict requests at once: one predicts, the others wait for the model
    max_parses: int = 2  # /api/parse requests at once (an SVG parse takes a core for seconds)
    retry_after: int = 1  # seconds

    def __post_init__(self):
        if min(self.max_predicts, self.max_parses, self.retry_after) < 1:
            raise R2CNNError("max_predicts, max_parses and retry_after must be at least 1")
        if self.max_buffered_bytes < self.max_body_bytes:
            raise R2CNNError(f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least max_body_bytes "
                             f"({self.max_body_bytes})")


# The fields are checked by r2cnn.strokes (the contract Python's predict applies too, with the same messages), not
# by pydantic, whose messages differ; the schemas below are what /docs shows.
_NUMBERS = {"type": "array", "items": {"type": "number"}, "minItems": 1}
Drawing = Annotated[Any, WithJsonSchema({"type": "array", "minItems": 1, "maxItems": MAX_STROKES,
                                         "items": {"type": "array", "minItems": 2, "maxItems": 3, "items": _NUMBERS}})]
Points = Annotated[Any, WithJsonSchema({"type": "array", "minItems": 1, "maxItems": MAX_POINTS, "items": {
    "type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}}})]
TopK = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "default": 5})]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    drawing: Drawing = Field(
        None, description="strokes in drawing order, each [xs, ys] (simplified) or [xs, ys, ts] (raw, ts in ms): "
                          f"equal lengths, any coordinate range, y down; at most {MAX_POINTS} points and "
                          f"{MAX_STROKES} strokes. Give this or points.",
        examples=[[[[10, 60, 110], [10, 80, 10]], [[30, 90], [50, 50]]]])
    points: Points = Field(
        None, description="the (N, 3) form: rows [x, y, pen_end], pen_end 1 on the last point of each stroke, "
                          "else 0. Give this or drawing.")
    top_k: TopK = Field(5, description="how many classes to return: a JSON integer >= 1 (not \"5\", not true); "
                                       "more than the model's classes gives them all")

    def sketch_points(self):
        """The request's sketch as points ``(N, 3)`` float32, checked by :mod:`r2cnn.strokes`."""
        from r2cnn.strokes import drawing_points, rows_points

        if (self.drawing is None) == (self.points is None):
            raise R2CNNError(f"{INPUT}: give one of 'drawing' (strokes [[xs, ys], ...] or [[xs, ys, ts], ...]) "
                             f"or 'points' ([[x, y, pen_end], ...])")
        return drawing_points(self.drawing)[0] if self.points is None else rows_points(self.points)


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(serialization_alias="class", validation_alias="class")
    probability: float


class PredictResponse(BaseModel):
    top: list[ClassProbability] = Field(description="most likely first")
    attention: list[list[float]] | None = Field(
        description="per stroke, the attention at each point in [0, 1] (mean over the model's channels); "
                    "null for a model without per-point attention (CNN-only)")
    attention_channels: int | None


class BrowserModelInfo(BaseModel):
    url: str = Field(description="the exported ONNX model, relative to the page")
    bytes: int
    margin: float = Field(description="the normalisation margin of the model's input (r2cnn.data.transforms.normalize)")
    runtime: str = Field(description="the in-browser runtime the page loads from the package")


class ClassesResponse(BaseModel):
    classes: list[str]
    model: str
    has_attention: bool
    browser_model: BrowserModelInfo | None = Field(
        None, description="an exported model the page runs itself; null: recognition on the server only")
    browser_note: str | None = Field(None, description="why the page does or does not run the model itself")


class ParseResponse(BaseModel):
    drawing: list[list[list[float]]] = Field(description="strokes, each [xs, ys], in the file's coordinates")
    label: str | None = Field(description="the record's word (ndjson); null for SVG")


# An answer given before the request body is read (413, 503): the rest of the body, up to this many bytes, is read
# and dropped, so that the client (which sends its whole body before it reads) gets the answer; more (or a chunked
# body), and the connection closes after the answer instead of reading it.
DRAIN_BYTES = 1_000_000


def early_answer_headers(scope, read: int) -> dict:
    """``Connection: close`` for an answer given after ``read`` body bytes when more than DRAIN_BYTES are to come."""
    declared = dict(scope["headers"]).get(b"content-length", b"")
    left = int(declared) - read if declared.isdigit() else None
    return {} if left is not None and left <= DRAIN_BYTES else {"Connection": "close"}


def busy(message: str, retry_after: int, headers: dict | None = None) -> JSONResponse:
    """The 503 of a request beyond a bound on the work in flight."""
    return JSONResponse({"detail": message, "message": f"{message}; retry in {retry_after} s"}, status_code=503,
                        headers={"Retry-After": str(retry_after), **(headers or {})})


class BodyLimit:
    """ASGI middleware: answer 413 once a request body exceeds ``max_bytes``, before anything parses it, and 503
    while the bodies of the requests in flight (being received or worked on) hold ``max_buffered`` bytes.

    A declared ``Content-Length`` over the limit is refused without reading; otherwise the body is read up to the
    limit (chunked uploads included) and handed on. After a refusal the rest of the body is read and dropped, or
    the connection closed when more than DRAIN_BYTES are to come (:func:`early_answer_headers`).

    Once no request with a body has been in flight for ``TRIM_AFTER`` seconds, the memory that bodies, parses and
    predictions freed is handed back to the OS (:func:`r2cnn.serve.server.release_memory`, in a thread): a burst
    does not leave the server at its peak size (docs/architecture.md "Serving under load")."""

    TRIM_AFTER = 1.0

    def __init__(self, app, max_bytes: int, max_buffered: int | None = None, retry_after: int = 1):
        self.app = app
        self.max_bytes = max_bytes
        self.max_buffered = max_buffered if max_buffered is not None else 32 * max_bytes
        self.retry_after = retry_after
        # the event loop's only, no lock: bytes counted against max_buffered, requests holding some, the trim due
        self.buffered = 0
        self.requests = 0
        self._trim = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send, 0)
        held = int(declared or 0)  # this request's bytes counted in self.buffered
        if not self._take(held):
            return await self._busy(scope, receive, send, 0)
        self.requests += 1
        if self._trim is not None:
            self._trim.cancel()
        try:
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_bytes:
                    return await self._refuse(scope, receive, send, len(body))
                if len(body) > held:  # chunked, or more than declared: count what came
                    if not self._take(len(body) - held):
                        return await self._busy(scope, receive, send, len(body))
                    held = len(body)
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.buffered -= held
            self.requests -= 1
            if self.requests == 0:
                self._trim = asyncio.get_running_loop().call_later(self.TRIM_AFTER, self._release)

    def _release(self):
        from r2cnn.serve.server import release_memory

        self._trim = None
        asyncio.get_running_loop().run_in_executor(None, release_memory)

    def _take(self, n: int) -> bool:
        if n and self.buffered + n > self.max_buffered:
            return False
        self.buffered += n
        return True

    async def _refuse(self, scope, receive, send, read: int):
        message = f"request body larger than {self.max_bytes} bytes"
        await JSONResponse({"detail": message, "message": message}, status_code=413,
                           headers=early_answer_headers(scope, read))(scope, receive, send)

    async def _busy(self, scope, receive, send, read: int):
        message = f"server busy: request bodies in flight hold {self.max_buffered} bytes"
        await busy(message, self.retry_after, early_answer_headers(scope, read))(scope, receive, send)


class WorkLimit:
    """ASGI middleware: at most ``bounds[path]`` requests to each of these paths in flight at once, from their head
    (their body is read within this bound, by :class:`BodyLimit`) until they are answered; one more gets 503 with
    ``Retry-After`` at once, its body never buffered. The work itself runs in the thread pool, so the event loop
    (and ``/health``) stays free."""

    def __init__(self, app, bounds: dict[str, int], retry_after: int = 1):
        self.app = app
        self.bounds = dict(bounds)
        self.retry_after = retry_after
        self.in_flight = dict.fromkeys(self.bounds, 0)  # the event loop's only: no lock

    async def __call__(self, scope, receive, send):
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in self.bounds:
            return await self.app(scope, receive, send)
        if self.in_flight[path] >= self.bounds[path]:
            message = f"server busy: {self.bounds[path]} requests to {path} in flight"
            return await busy(message, self.retry_after, early_answer_headers(scope, 0))(scope, receive, send)
        self.in_flight[path] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[path] -= 1


class HostCheck:
    """ASGI middleware: answer 400 to a request whose ``Host`` header is not one of ``hosts`` (lower case,
    ``name:port``). A server on the loopback address accepts only its own names, so that a web page elsewhere
    cannot reach it through a name it controls that resolves to 127.0.0.1 (DNS rebinding)."""

    def __init__(self, app, hosts: Sequence[str]):
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            if host not in self.hosts:
                message = (f"Host header {host[:100]!r} is not this server's (expected one of "
                           f"{', '.join(sorted(self.hosts))})")
                return await JSONResponse({"detail": message, "message": message}, status_code=400)(
                    scope, receive, send)
        await self.app(scope, receive, send)


def one_at_a_time(lock: threading.Lock):
    """Decorate a thread-pool endpoint so that it runs holding ``lock``. The work of a predict (its JSON body, its
    checks, the model, its answer) is Python that holds the GIL; several such threads at once starve the event loop
    (``/health``, every other connection) of it, so admitted predicts do it one after the other, waiting for
    ``lock`` with the GIL released."""
    def decorate(endpoint):
        @functools.wraps(endpoint)
        def locked(*args, **kwargs):
            with lock:
                return endpoint(*args, **kwargs)
        return locked
    return decorate


def json_in_threads(lock: threading.Lock) -> type[APIRoute]:
    """A route class whose JSON request body is parsed in the thread pool holding ``lock``: ``json.loads`` of a
    2 MB body holds the GIL for tens of ms at a stretch, which on the event loop would hold up every connection."""
    class LockedJSONRequest(Request):
        async def json(self):
            if not hasattr(self, "_json"):
                self._json = await run_in_threadpool(_loads_holding, lock, await self.body())
            return self._json

    class JSONInThreads(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def handle(request: Request):
                return await handler(LockedJSONRequest(request.scope, request.receive))

            return handle

    return JSONInThreads


def _loads_holding(lock: threading.Lock, body: bytes):
    with lock:
        return json.loads(body)


def _unparsable_body(error: BaseException | None) -> str:
    """Why FastAPI could not parse a JSON body (it answers 400 without saying): the cause, in a few words."""
    if isinstance(error, RecursionError):
        return "body: not usable JSON (nested too deeply)"
    if isinstance(error, UnicodeDecodeError):
        return "body: not UTF-8 text"
    if isinstance(error, ValueError) and "digits" in str(error):
        return "body: not usable JSON (a number of thousands of digits)"
    return "body: not usable JSON"


def _validation_message(errors: list[dict]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":  # its loc is the byte offset
        return f"body: not valid JSON ({first.get('ctx', {}).get('error', 'decode error')!s})"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def create_app(recognizer, limits: Limits = Limits(), hosts: Sequence[str] | None = None,
               browser: BrowserModel | None = None) -> FastAPI:
    """The application for one :class:`~r2cnn.serve.recognizer.Recognizer` (one checkpoint), and optionally its
    export for the page to run itself (:func:`r2cnn.serve.browser.browser_model`). ``hosts``: the ``Host`` headers
    accepted (``name:port``, see :class:`HostCheck`); None accepts any."""
    # Our own /docs (below) instead of FastAPI's, which loads Swagger UI from a CDN; no ReDoc (CDN only).
    app = FastAPI(title="Sketch-R2CNN", version=_version(), docs_url=None, redoc_url=None,
                  description="Vector sketch recognition with per-point attention (Li et al., IEEE TVCG 2020).")
    predicting = threading.Lock()  # one predict works at a time (one_at_a_time), from its JSON body on
    app.router.route_class = json_in_threads(predicting)
    # added in this order, run in the reverse: Host check, work in flight, body (size, bytes in flight)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, max_buffered=limits.max_buffered_bytes,
                       retry_after=limits.retry_after)
    app.add_middleware(WorkLimit, bounds={"/api/predict": limits.max_predicts, "/api/parse": limits.max_parses},
                       retry_after=limits.retry_after)
    if hosts is not None:
        app.add_middleware(HostCheck, hosts=hosts)  # added last: runs first
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI's own 4xx (404, 405, and 400 for a body it cannot parse) with the one-line message every error
        # answer has
        parse_error = exc.status_code == 400 and exc.__cause__ is not None
        message = _unparsable_body(exc.__cause__) if parse_error else str(exc.detail)
        return JSONResponse({"detail": exc.detail, "message": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # Without the offending input: it may be huge, or NaN, which JSON cannot carry back.
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors), "message": _validation_message(exc.errors())},
                            status_code=422)

    @app.exception_handler(R2CNNError)
    async def _bad_input(request: Request, exc: R2CNNError):
        return JSONResponse({"detail": str(exc), "message": str(exc)}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/sw.js", include_in_schema=False)
    def service_worker():  # beside the page, so that its scope covers the page (static/sw.js says what it caches)
        return FileResponse(STATIC / "sw.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():  # browsers ask for it whatever the page says; an SVG is what the page's <link> names too
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                                   swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
                                   swagger_favicon_url="/favicon.ico",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io

    @app.get("/browser/model.onnx", include_in_schema=False)
    def browser_model_file():
        if browser is None or browser.path is None:
            raise HTTPException(404, "no model for the browser: start r2cnn serve with --onnx")
        return FileResponse(browser.path, media_type="application/octet-stream")

    @app.get("/health")
    async def health() -> dict:  # on the event loop: answers while every worker thread is busy
        # the file's name only: where it lives on the server is nobody's business
        return {"status": "ok", "model": recognizer.model_name, "classes": len(recognizer.classes),
                "checkpoint": Path(recognizer.source).name, "engine": recognizer.engine}

    @app.get("/api/classes", response_model=ClassesResponse)
    def classes():
        return ClassesResponse(classes=recognizer.classes, model=recognizer.model_name,
                               has_attention=recognizer.has_attention,
                               browser_model=browser and browser.info(), browser_note=browser and browser.note)

    @app.post("/api/predict", response_model=PredictResponse)
    @one_at_a_time(predicting)
    def predict(body: PredictRequest):
        from r2cnn.sketch import Sketch
        from r2cnn.strokes import check_top_k

        top_k = check_top_k(body.top_k)  # in the order Python's predict checks
        strokes = Sketch(body.sketch_points()).strokes()
        result = recognizer.recognize(strokes, top_k, source="request")
        return PredictResponse(top=[ClassProbability(name=c, probability=p) for c, p in result["top"]],
                               attention=result["attention"], attention_channels=result["channels"])

    @app.post("/api/parse", response_model=ParseResponse,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def parse(request: Request, format: Literal["ndjson", "svg"] = Query(description="the file's format"),
                    name: str = Query("sketch", max_length=200, description="file name, for error messages"),
                    index: int = Query(0, ge=0, le=100_000, description="which sketch of an ndjson file")):
        data = await request.body()
        return await run_in_threadpool(_parse_sketch, data, format, name, index)

    return app


def _parse_sketch(data: bytes, fmt: str, name: str, index: int) -> ParseResponse:
    """Read sketch ``index`` of a file's bytes with :func:`r2cnn.data.formats.read_sketches`."""
    from r2cnn.data.formats import read_sketches

    shown = Path(name).name or "sketch"
    with tempfile.TemporaryDirectory(prefix="r2cnn-serve-") as tmp:
        path = Path(tmp) / f"upload.{fmt}"
        path.write_bytes(data)
        try:
            read = list(islice(read_sketches(path, fmt=fmt), index + 1))
        except SketchFormatError as e:
            raise R2CNNError(str(e).replace(str(path), shown)) from None
    if len(read) <= index:
        raise R2CNNError(f"{shown}: has {len(read)} sketches, no sketch {index}")
    sketch = read[index]
    # An SVG's label is its folder's name (TU-Berlin's layout): here a temporary folder, so none.
    label = None if fmt == "svg" or sketch.label is None else str(sketch.label)
    return ParseResponse(drawing=[[s[:, 0].tolist(), s[:, 1].tolist()] for s in sketch.strokes()], label=label)


def _version() -> str:
    from r2cnn.version import __version__

    return __version__

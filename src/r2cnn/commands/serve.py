"""``r2cnn serve``: the drawing page with live recognition and its JSON API (:mod:`r2cnn.serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from r2cnn.commands.options import add_device, resolve_device
from r2cnn.engine.demo import DEMO_CHECKPOINT, default_checkpoint

HELP = "a local web page to draw on, with live top-5 classes and attention, and its JSON API"

# --onnx models up to this size go to the page: cpu-r2cnn's (about 12 MB) does, the paper's ResNet50 (about 95 MB)
# stays on the server.
DEFAULT_MAX_MB = 50.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help=f"a trained checkpoint (default: {DEMO_CHECKPOINT}, made by `r2cnn demo`, "
                                        "unless --onnx is given)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    add_device(p)
    p.add_argument("--onnx", metavar="FILE",
                   help="a model exported with `r2cnn export --format onnx` (its .json sidecar beside it), checked "
                        "before it is served: the page runs it in the browser (onnxruntime-web, WASM) and keeps "
                        "recognising with the server stopped; without --checkpoint the server answers with it too "
                        "(onnxruntime), with --checkpoint both must be the same model")
    p.add_argument("--browser-max-mb", type=float, default=DEFAULT_MAX_MB, metavar="MB",
                   help="an --onnx model larger than this stays on the server (default %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=2_000_000, help="largest request body accepted")
    p.add_argument("--request-timeout", type=float, default=10.0, metavar="S",
                   help="seconds a client has to send a whole request, head and body; a slower one gets 408 and "
                        "is disconnected")
    p.add_argument("--max-predicts", type=int, default=8, metavar="N",
                   help="predict requests in flight at once (one runs, the others wait for it); more get 503 "
                        "with Retry-After")
    p.add_argument("--max-parses", type=int, default=2, metavar="N",
                   help="sketch-file parses (/api/parse) in flight at once; more get 503 with Retry-After")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])


def load_served(args):
    """The server's model and the page's: ``(recognizer, browser model or None, what serves)``.

    With --onnx alone the server answers with that ONNX model (onnxruntime); with --checkpoint (or neither: the
    demo's checkpoint) with the checkpoint in PyTorch, and an --onnx beside it must be the same model
    (:func:`r2cnn.serve.recognizer.check_same_model`). Every file is checked here, before anything is announced.
    """
    from r2cnn.engine.predict import Predictor
    from r2cnn.errors import R2CNNError
    from r2cnn.serve import Recognizer
    from r2cnn.serve.browser import browser_model
    from r2cnn.serve.recognizer import check_same_model, load_onnx

    exported = load_onnx(args.onnx) if args.onnx else None
    if exported is not None and not args.checkpoint:
        if args.device == "cuda":
            raise R2CNNError("--device cuda: an --onnx model alone runs on the CPU (onnxruntime); give its "
                             "--checkpoint too to answer on CUDA")
        recognizer = Recognizer(exported, source=str(args.onnx))
        serves = f"ONNX model {args.onnx} in onnxruntime"
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
        predictor = Predictor(str(checkpoint), resolve_device(args.device))
        if exported is not None:
            check_same_model(predictor, exported, str(checkpoint), str(args.onnx))
        recognizer = Recognizer(predictor, source=str(checkpoint))
        serves = f"checkpoint {checkpoint}"
    browser = None
    if exported is not None:
        browser = browser_model(args.onnx, recognizer.classes, recognizer.transform, int(args.browser_max_mb * 1e6))
    return recognizer, browser, serves


def run(args) -> int:
    from r2cnn.errors import R2CNNError
    from r2cnn.serve import Limits, create_app
    from r2cnn.serve.server import URL_PREFIX, listen, loopback_hosts, run as run_server, url_of

    if not 0 <= args.port <= 65535:
        raise R2CNNError(f"--port must be in 0..65535, not {args.port}")
    if not args.browser_max_mb >= 0:
        raise R2CNNError(f"--browser-max-mb must be a size in MB (>= 0), not {args.browser_max_mb}")
    if args.max_body_bytes < 1024:
        raise R2CNNError(f"--max-body-bytes must be at least 1024, not {args.max_body_bytes}")
    if not args.request_timeout > 0:
        raise R2CNNError(f"--request-timeout must be a number of seconds > 0, not {args.request_timeout}")
    if min(args.max_predicts, args.max_parses) < 1:
        raise R2CNNError(f"--max-predicts and --max-parses must be at least 1, not {args.max_predicts} and "
                         f"{args.max_parses}")
    recognizer, browser, serves = load_served(args)
    sock = listen(args.host, args.port)
    attention = "with attention" if recognizer.has_attention else "no per-point attention (CNN-only)"
    print(f"{URL_PREFIX}{url_of(sock)} ({recognizer.model_name}, {len(recognizer.classes)} classes, {attention}; "
          f"{serves}); API docs at /docs; Ctrl-C stops", flush=True)
    if browser is not None:
        print(f"browser engine: {browser.note}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: other machines can reach this server", flush=True)
    hosts = loopback_hosts(args.host, sock.getsockname()[1])
    limits = Limits(max_body_bytes=args.max_body_bytes, max_predicts=args.max_predicts, max_parses=args.max_parses,
                    max_buffered_bytes=max(Limits.max_buffered_bytes, 8 * args.max_body_bytes))
    app = create_app(recognizer, limits, hosts, browser)
    run_server(app, sock, args.log_level, args.request_timeout)
    return 0

"""The local web page for drawing with live recognition, and its JSON API (``r2cnn serve``).

- :mod:`r2cnn.serve.recognizer`: the model that answers (a checkpoint's :class:`~r2cnn.engine.predict.Predictor`,
  or an exported ONNX model in onnxruntime, checked first) made safe for concurrent requests, taking strokes in
  any coordinates and returning top-k classes and per-point attention aligned with them;
- :mod:`r2cnn.serve.app`: the FastAPI application (``/``, ``/api/predict``, ``/api/classes``, ``/api/parse``,
  ``/health``, OpenAPI at ``/docs``, the favicon, the browser model) with its request limits;
- :mod:`r2cnn.serve.browser`: the exported ONNX model the page may run itself (onnxruntime-web), and whether
  it may;
- :mod:`r2cnn.serve.server`: listening sockets and uvicorn, in this process or as a child process;
- ``static/``: the page itself (plain HTML, CSS and JavaScript, no build step), and under ``static/vendor`` the
  third-party files it loads (onnxruntime-web, Swagger UI), each with its version and licence.
"""

from r2cnn.serve.app import Limits, create_app
from r2cnn.serve.recognizer import Recognizer

__all__ = ["Limits", "Recognizer", "create_app"]

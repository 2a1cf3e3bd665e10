"""`jina-onnx serve`: an OpenAI- and TEI-compatible embeddings server (the `serve` extra).

- `requests`: what the server reads from a request, as pure functions (no server, no model needed);
- `batcher`: requests of one model merged into batches by token count;
- `loading`: the models a server answers with, each loaded once;
- `hotpath`: the embedding routes as plain ASGI handlers;
- `app`: the ASGI app (`create_app`);
- `workers`: `serve --workers N`, processes sharing the port;
- `run`: `serve`, which runs one process or the workers under uvicorn.

Importing this package loads no web framework: Starlette and uvicorn are imported when an app is made.
"""

from .app import create_app
from .loading import load_models
from .requests import ApiError, Limits
from .run import serve

__all__ = ["ApiError", "Limits", "create_app", "load_models", "serve"]

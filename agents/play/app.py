"""The ``hlmat play`` web app (FastAPI): the annotation page, its JSON API and the replay viewer.

Safe by default: every API call and page needs the session token (``?token=`` on the page's address, then
the ``X-HLMAT-Token`` header), request bodies are pydantic models with bounded values and unknown fields
refused, bodies over :data:`MAX_BODY_BYTES` are refused before they are read whole, and the client never names
a file: the server reads only the dataset and the trajectory file given on its command line.

API (all JSON; errors are ``{"detail": "one line"}`` with 4xx/5xx):

- ``GET /api/state``: the page's view (:meth:`PlaySession._answer`);
- ``POST /api/click`` ``{"x", "y", "positive", "client_t"?}``: a click in image pixels;
- ``POST /api/finish``: end and record the episode (the answer carries the IoU);
- ``POST /api/next`` ``{"sample_id"?}``: the next sample, or a named one;
- ``GET /api/replay/episodes`` and ``GET /api/replay/frame?episode=I&step=K`` (replay mode).
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Callable

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from hlmat_env.errors import HLMATError, InvalidAction, UnknownName

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 4096
"""Largest request body accepted (a click is about 60 bytes)."""
MAX_COORD = 100_000
"""Largest pixel coordinate a click body may hold (larger is refused by validation, before the image check)."""
TOKEN_HEADER = "X-HLMAT-Token"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",  # the token in the address stays on this page
    "X-Content-Type-Options": "nosniff",
}
"""Headers of the page: nothing but this server's own scripts and styles, no framing, no referrer."""
log = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: refuse (413) a request whose body exceeds ``limit`` bytes, by its ``Content-Length``
    or, for a chunked body, while it arrives.

    Args:
        app: the ASGI app.
        limit: the largest body in bytes.
    """

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _reject(send, 413, f"request body too large (limit {self.limit} bytes)")
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as e:  # raised outside FastAPI's handlers (the response has not started)
            await _reject(send, 413, e.detail)


class _TooLarge(HTTPException):
    """A chunked body grew past the limit (an HTTP 413 that FastAPI's body parsing passes on)."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body too large (limit {limit} bytes)")


async def _reject(send: Callable, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ClickBody(BaseModel):
    """A click in full-resolution image pixels: ``x`` column, ``y`` row; ``client_t`` the page's seconds."""

    model_config = ConfigDict(extra="forbid", strict=True)
    x: int = Field(ge=-MAX_COORD, le=MAX_COORD)
    y: int = Field(ge=-MAX_COORD, le=MAX_COORD)
    positive: bool
    client_t: float | None = Field(default=None, ge=0, le=1e7)


class NextBody(BaseModel):
    """The sample to show next (None: the next in dataset order)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    sample_id: str | None = Field(default=None, max_length=300)


def new_token() -> str:
    """A random session token (22 URL-safe characters, 128 bits)."""
    return secrets.token_urlsafe(16)


def create_app(session: Any = None, *, token: str | None = None, replay: Any = None) -> Any:
    """The FastAPI app of a play server (annotation mode with ``session``) or of a replay viewer (``replay``).

    Args:
        session: a :class:`~agents.play.session.PlaySession` (annotation mode).
        token: the session token (default: :func:`new_token`); stored as ``app.state.token``.
        replay: a :class:`~agents.play.replay.ReplaySource` (replay mode).

    Returns:
        The app (an ASGI app; ``uvicorn.run(app)`` serves it).
    """
    if (session is None) == (replay is None):
        raise ValueError("create_app needs exactly one of session (annotation) and replay")
    token = token or new_token()
    app = FastAPI(title="hlmat play", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token, app.state.session, app.state.replay = token, session, replay

    def check_token(request: Request) -> None:
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(403, "missing or wrong session token: open the address hlmat play printed")

    @app.exception_handler(HLMATError)
    async def _hlmat_error(request: Request, exc: HLMATError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownName) else 422 if isinstance(exc, InvalidAction) else 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("hlmat play: server error")
        return JSONResponse({"detail": f"server error: {type(exc).__name__}: {exc}"}, status_code=500)

    page = "replay.html" if replay is not None else "index.html"

    @app.get("/", dependencies=[Depends(check_token)])
    def index() -> FileResponse:
        return FileResponse(STATIC / page, headers=PAGE_HEADERS)

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        allowed = {p.name: p for p in STATIC.iterdir() if p.suffix in (".js", ".css")}
        if name not in allowed:  # a fixed list: no path from the client reaches the file system
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(allowed[name], headers={"Cache-Control": "no-store"})

    if session is not None:
        @app.get("/api/state", dependencies=[Depends(check_token)])
        def state() -> dict:
            return session.state()

        @app.post("/api/click", dependencies=[Depends(check_token)])
        def click(body: ClickBody) -> dict:
            return session.click(body.x, body.y, body.positive, body.client_t)

        @app.post("/api/finish", dependencies=[Depends(check_token)])
        def finish() -> dict:
            return session.finish()

        @app.post("/api/next", dependencies=[Depends(check_token)])
        def next_sample(body: NextBody | None = None) -> dict:
            return session.start(None if body is None else body.sample_id)
    else:
        @app.get("/api/replay/episodes", dependencies=[Depends(check_token)])
        def episodes() -> dict:
            return {"episodes": replay.episodes()}

        @app.get("/api/replay/frame", dependencies=[Depends(check_token)])
        def frame(episode: int = Query(ge=0, le=10_000_000), step: int = Query(ge=0, le=100_000)) -> dict:
            return replay.frame(episode, step)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app

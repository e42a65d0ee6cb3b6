"""The HTTP inference service (FastAPI on uvicorn): `python -m engine.serve` starts it.

    POST /predict          an image as the multipart field `file`, or as the raw request body
    GET  /classify-url     ?url=… fetched with the URL-list downloader's rules (engine.download)
    GET  /health           liveness, and how many requests and batches so far
    GET  /model            classes, architecture, image size, normalisation, metrics, run id
    GET  /docs             the OpenAPI page FastAPI draws

JSON in and out. Every problem a client can cause is a 4xx with {"error": "<sentence>"}; no
traceback is ever sent, and the server stays up. The model is loaded once, before the first request.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from engine.download import FetchFailed, URLRefused, fetch
from engine.images import FORMATS_SENTENCE, ImageError
from engine.inference import (Batcher, ServeConfig, ServedModel, ServeError, auto_max_batch,
                              config_json, prediction_json)

MULTIPART_OVERHEAD = 64 * 1024   # room for the boundaries and part headers around the image
ENDPOINTS = "POST /predict, GET /classify-url?url=…, GET /health, GET /model and GET /docs"

PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the image"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


class ClientError(Exception):
    """A request the service refuses: an HTTP status and a sentence."""

    def __init__(self, status: int, sentence: str):
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


def _error(status: int, sentence: str) -> JSONResponse:
    return JSONResponse({"error": sentence}, status_code=status)


def _only_params(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise ClientError(400, f"Unknown query parameter {unknown[0]!r}; this endpoint takes {known}.")


def _too_big(cfg: ServeConfig) -> ClientError:
    return ClientError(413, f"The image is over the {cfg.max_bytes / 1e6:g} MB limit of this "
                            "server. Send a smaller image.")


async def _read_body(request: Request, cap: int, cfg: ServeConfig) -> bytes:
    """The request body, refused with 413 as soon as it passes `cap` bytes and with 408 when it
    takes longer than cfg.body_timeout (a client sending a byte a second holds no slot forever)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_big(cfg)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(cfg.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _too_big(cfg)
                chunks.append(chunk)
    except TimeoutError:
        raise ClientError(408, f"The upload took longer than {cfg.body_timeout:g} s, so it was "
                               "stopped.") from None
    return b"".join(chunks)


async def _multipart_image(request: Request, body: bytes, cfg: ServeConfig) -> bytes:
    """The bytes of the one field `file` of a multipart body; any other field is refused."""
    async def replay() -> AsyncIterator[bytes]:
        yield body
        yield b""

    try:
        form = await MultiPartParser(request.headers, replay(), max_files=2, max_fields=8,
                                     max_part_size=64 * 1024).parse()
    except MultiPartException as exc:
        raise ClientError(400, f"The multipart body could not be read ({exc}); send the image as "
                               "the field `file` (curl -F file=@photo.jpg).") from None
    try:
        names = [k for k, _ in form.multi_items()]
        unknown = [k for k in names if k != "file"]
        if unknown:
            raise ClientError(400, f"Unknown form field {unknown[0]!r}; send only the image, as the "
                                   "field `file` (curl -F file=@photo.jpg).")
        if not names:
            raise ClientError(400, "The form has no field `file`; send the image as "
                                   "curl -F file=@photo.jpg.")
        if len(names) > 1:
            raise ClientError(400, "Send one image per request (the form has several `file` fields).")
        item = form["file"]
        if not isinstance(item, UploadFile):
            raise ClientError(400, "The field `file` must be a file upload (curl -F file=@photo.jpg), "
                                   "not text.")
        data = await item.read(cfg.max_bytes + 1)
        if len(data) > cfg.max_bytes:
            raise _too_big(cfg)
        return data
    finally:
        await form.close()


async def _classify(app_state: Any, data: bytes, t0: float) -> dict[str, Any]:
    """Decode and prepare in a worker thread, then wait for the batcher's row."""
    served: ServedModel = app_state.served
    batcher: Batcher = app_state.batcher
    cfg: ServeConfig = app_state.cfg
    if not data:
        raise ClientError(400, "The request has no image (the body is empty). " + FORMATS_SENTENCE)
    batcher.expect()   # the batcher may wait a few ms for this image to join a batch
    try:
        x = await run_in_threadpool(served.prepare, data, cfg.max_bytes)
    except BaseException as exc:   # a bad image, or the client gone (cancelled)
        batcher.unexpect()
        if isinstance(exc, ImageError):
            raise ClientError(400, str(exc)) from None
        raise
    try:
        future = batcher.submit(x, expected=True)
    except ServeError as exc:
        raise ClientError(503, str(exc)) from None
    probs = await asyncio.wrap_future(future)
    return prediction_json(served.classes, probs, time.perf_counter() - t0)


def create_app(served: ServedModel, cfg: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving one loaded model; the batcher thread starts with the app."""
    cfg = cfg or ServeConfig()
    if cfg.max_batch is None:   # resolved once, so /model reports the batch size in use
        cfg = dataclasses.replace(cfg, max_batch=auto_max_batch(served.size, cfg.device))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = Batcher(served, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                                    device=cfg.device, max_queue=cfg.max_queue)
        app.state.started = time.time()
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(title="Deep Learning Lab inference service", lifespan=lifespan,
                  description=f"Serves {served.description['arch']} with "
                              f"{len(served.classes)} classes. " + __doc__.split("\n\n")[1])
    app.state.served, app.state.cfg = served, cfg

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        return _error(exc.status, exc.sentence)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"There is no {request.url.path} here; the endpoints are {ENDPOINTS}.")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; the "
                               f"endpoints are {ENDPOINTS}.")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return _error(400, f"The request is not valid: {where or 'input'} {first.get('msg', '')}."
                           .replace("..", "."))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # Logged by uvicorn; the client gets a sentence, never the traceback.
        return _error(500, f"The server failed on this request ({type(exc).__name__}); the model "
                           "is still loaded, so try again or report it.")

    @app.post("/predict", openapi_extra=PREDICT_BODY,
              summary="Classify an image sent as the multipart field `file` or as the raw body")
    async def predict(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        _only_params(request, ())
        multipart = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
        body = await _read_body(request, cfg.max_bytes + (MULTIPART_OVERHEAD if multipart else 0), cfg)
        data = await _multipart_image(request, body, cfg) if multipart else body
        return await _classify(request.app.state, data, t0)

    @app.get("/classify-url", summary="Fetch an image from a public http(s) address and classify it")
    async def classify_url(request: Request, url: str = "") -> dict[str, Any]:
        t0 = time.perf_counter()
        _only_params(request, ("url",))
        if not url.strip():
            raise ClientError(400, "Give the image's address as the parameter url "
                                   "(/classify-url?url=https://…).")
        try:
            data = await run_in_threadpool(fetch, url, timeout=cfg.fetch_timeout,
                                           max_bytes=cfg.max_bytes, allow_hosts=cfg.allow_hosts)
        except URLRefused as exc:
            raise ClientError(400, str(exc)) from None
        except FetchFailed as exc:
            raise ClientError(422, f"The image could not be fetched: {exc}") from None
        return await _classify(request.app.state, data, t0)

    @app.get("/health", summary="Whether the model is loaded, and the work done so far")
    async def health(request: Request) -> dict[str, Any]:
        _only_params(request, ())
        return {"status": "ok", "arch": served.description["arch"], "classes": len(served.classes),
                "uptime_s": round(time.time() - request.app.state.started, 1),
                **request.app.state.batcher.stats()}

    @app.get("/model", summary="Classes, architecture, preprocessing, metrics and run id")
    async def model(request: Request) -> dict[str, Any]:
        _only_params(request, ())
        return {**served.description, "source": served.source, "serving": config_json(cfg)}

    return app


def run_service(served: ServedModel, cfg: ServeConfig) -> None:
    """Serve until interrupted: set the thread counts, then run uvicorn in this process."""
    import torch
    import uvicorn

    torch.set_num_threads(cfg.threads)
    # Requests are already decoded side by side in worker threads; OpenCV's own pool inside each
    # call would only put more threads on the same cores.
    import cv2
    cv2.setNumThreads(1)
    uvicorn.run(create_app(served, cfg), host=cfg.host, port=cfg.port, log_level="warning",
                timeout_graceful_shutdown=5, limit_concurrency=max(64, cfg.max_queue))


__all__ = ["ClientError", "create_app", "run_service"]

"""The HTTP API of ``xlspt serve`` (FastAPI on uvicorn), and the batcher that lets requests share passes.

FastAPI because its request models are the validation and the OpenAPI description at once
(``/openapi.json``, ``/docs``); it runs on Starlette and uvicorn, the field's well-kept ASGI stack. One small ASGI middleware checks the
API key and caps request bytes, so that both answer in the API's JSON error form.

Scoring runs in one worker thread, so the event loop keeps reading requests while the model
works. Requests wait in a bounded queue; the first to arrive waits ``batch_window_ms`` for others,
then as many as fit (``max_batch_requests``, ``max_batch_texts``) are scored together by
:meth:`~xlspt.serve.tasks.TaskSet.score`. Every error is a JSON object ``{"error": "one line"}``.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException

from ..errors import XlsptError
from ..pipeline import prediction_records
from .config import ServeConfig
from .tasks import Job, RequestError, TaskSet

#: Paths that answer without the API key: a load balancer's probes carry none, and they reveal nothing.
OPEN_PATHS = ("/healthz", "/readyz")

Text = Annotated[StrictStr, Field(min_length=1, description="a text to classify (not empty)")]


class ClassifyRequest(BaseModel):
    """Texts to classify with one task (``task``) or several (``tasks``: one pass over the texts serves them all)."""

    model_config = ConfigDict(extra="forbid")

    task: StrictStr | None = Field(None, description="the task's name (GET /v1/tasks)")
    tasks: list[StrictStr] | None = Field(None, min_length=1, description="several tasks for the same texts")
    texts: list[Text] = Field(min_length=1, description="the texts, one prediction each")
    top_k: int | None = Field(None, ge=1, description="also give the k most probable labels")
    min_confidence: float | None = Field(None, ge=0, le=1, description="answer 'abstain' below this probability")
    lang: StrictStr | None = Field(None, description="the texts' language (e.g. ory_Orya): content-free calibration "
                                                      "uses its script")
    unlabeled: list[Text] = Field(default_factory=list, description="for a task calibrated with 'unlabeled': "
                                                                   "unlabeled texts of the same language")


class LabelProbability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    """What ``xlspt predict --format json`` prints for the same text."""

    text: str
    label: str
    probability: float
    top_k: list[LabelProbability] | None = None


class TaskPredictions(BaseModel):
    task: str
    protocol: str
    predictions: list[Prediction]


class ClassifyResponse(BaseModel):
    """One entry per task asked, in the order asked (a task named twice is answered once)."""

    results: list[TaskPredictions]


class ErrorResponse(BaseModel):
    error: str


@dataclass
class _Pending:
    job: Job
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)
    abandoned: bool = False


class Batcher:
    """A bounded queue of requests, scored in batches by one worker thread."""

    def __init__(self, score: Callable, config: ServeConfig):
        self.score, self.config = score, config
        self.pending: deque[_Pending] = deque()
        self.queued_texts = 0
        self.served = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="xlspt-score")
        self._wakeup = asyncio.Event()

    async def submit(self, job: Job):
        """The job's answer (or the :class:`RequestError` that refused it); 503 when the queue is full, 504 past the timeout."""
        if self.queued_texts + job.size > self.config.max_queue_texts:
            raise RequestError(503, f"the server is busy ({self.queued_texts} texts waiting): retry shortly")
        pending = _Pending(job, asyncio.get_running_loop().create_future())
        self.pending.append(pending)
        self.queued_texts += job.size
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self.config.timeout_s)
        except asyncio.TimeoutError:
            pending.abandoned = True
            raise RequestError(504, f"no answer within {self.config.timeout_s:g} s: send fewer texts, or retry") from None

    def _take(self) -> list[_Pending]:
        batch, texts = [], 0
        while self.pending and len(batch) < self.config.max_batch_requests:
            size = self.pending[0].job.size
            if batch and texts + size > self.config.max_batch_texts:
                break
            pending = self.pending.popleft()
            self.queued_texts -= size
            if not pending.abandoned:
                batch.append(pending)
                texts += size
        return batch

    def _full(self) -> bool:
        return (len(self.pending) >= self.config.max_batch_requests
                or sum(p.job.size for p in self.pending) >= self.config.max_batch_texts)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            wait = self.pending[0].arrived + self.config.batch_window_ms / 1000 - time.monotonic()
            if wait > 0 and not self._full():
                await asyncio.sleep(wait)
            batch = self._take()
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(self.executor, self.score, [p.job for p in batch])
            except Exception as exc:  # noqa: BLE001 - a failed pass fails its requests, not the server
                traceback.print_exc(file=sys.stderr)
                answers = [RequestError(500, f"scoring failed ({exc.__class__.__name__}); the server log has the "
                                             "traceback")] * len(batch)
            for pending, answer in zip(batch, answers):
                if not pending.future.done():
                    pending.future.set_result(answer)


class _State:
    """What the routes share: the tasks once loaded, the batcher, and why loading failed."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.tasks: TaskSet | None = None
        self.batcher: Batcher | None = None
        self.error: BaseException | None = None  # why the tasks could not be loaded


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON: send a JSON object such as {\"task\": \"topics\", \"texts\": [\"...\"]}"
    return f"{where or 'body'}: {first.get('msg', 'invalid')}" + (f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else "")


def create_app(load: Callable[[], TaskSet], config: ServeConfig, *, api_key: str | None = None,
               on_fatal: Callable[[BaseException], None] = lambda exc: None) -> FastAPI:
    """The API over the tasks that ``load`` returns; they load in the worker thread after the server listens
    (``/readyz`` says when), and ``on_fatal`` hears why they could not."""
    state = _State(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher = Batcher(lambda jobs: state.tasks.score(jobs), config)
        runner = asyncio.create_task(state.batcher.run())
        runner.add_done_callback(lambda task: task.cancelled() or on_fatal(task.exception() or RuntimeError("the batcher stopped")))
        loader = asyncio.create_task(_load(state, load, on_fatal))
        yield
        for task in (loader, runner):
            task.cancel()
        state.batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="xlspt", summary="Soft-prompt classifiers on one frozen model", lifespan=lifespan,
                  responses={"4XX": {"model": ErrorResponse}})
    app.state.xlspt = state
    app.add_middleware(_Guard, api_key=api_key, max_bytes=config.max_request_bytes)
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


async def _load(state: _State, load: Callable[[], TaskSet], on_fatal) -> None:
    try:
        state.tasks = await asyncio.get_running_loop().run_in_executor(state.batcher.executor, load)
    except asyncio.CancelledError:  # stopped while loading: not a failure to report
        raise
    except BaseException as exc:  # noqa: BLE001 - the command reports it as one line and exits
        state.error = exc
        on_fatal(exc)


class _Guard:
    """ASGI middleware: the API key on every path but :data:`OPEN_PATHS`, and the cap on request bytes (a 413
    raised while the body is read, so that the JSON error handler answers it)."""

    def __init__(self, app, api_key: str | None, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.expected and scope["path"] not in OPEN_PATHS and not secrets.compare_digest(
                headers.get(b"authorization", b""), self.expected):
            response = _error(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                              {"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        declared = headers.get(b"content-length", b"")
        received = 0

        async def limited():
            nonlocal received
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise HTTPException(413)
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413)
            return message

        await self.app(scope, limited, send)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(400 if exc.errors() and exc.errors()[0].get("type") == "json_invalid" else 422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        detail = {413: f"the request body is too large (at most {app.state.xlspt.config.max_request_bytes} bytes): "
                       "split it into several requests"}.get(exc.status_code, exc.detail)
        return _error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return _error(exc.status, str(exc), {"Retry-After": "1"} if exc.status == 503 else None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return _error(500, f"internal error ({exc.__class__.__name__}); the server log has the details")


def _ready(state: _State) -> TaskSet:
    if state.tasks is None:
        raise RequestError(503, "the model is still loading: retry when GET /readyz answers 200")
    return state.tasks


def _add_routes(app: FastAPI, state: _State) -> None:
    @app.get("/healthz", summary="the server process is up")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="the model and tasks are loaded (503 until then)")
    async def readyz():
        if state.tasks is None:
            return _error(503, f"the tasks could not be loaded: {state.error}" if state.error else "loading the model and tasks")
        return {"status": "ready", "tasks": list(state.tasks.tasks)}

    @app.get("/v1/tasks", summary="the hosted tasks: labels, base model, protocol, per-language results")
    async def list_tasks() -> dict:
        return {"tasks": _ready(state).describe()}

    @app.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True,
              summary="classify texts with one task or several (one pass over the texts for all)")
    async def classify(body: ClassifyRequest):
        tasks = _ready(state)
        job = _job(body, state.config)
        tasks.check(job)
        answer = await state.batcher.submit(job)
        if isinstance(answer, XlsptError):
            raise answer
        state.batcher.served += 1
        return {"results": [{"task": name, "protocol": tasks.tasks[name].protocol_name,
                             "predictions": prediction_records(answer[name])} for name in job.tasks]}


def _job(body: ClassifyRequest, config: ServeConfig) -> Job:
    if (body.task is None) == (body.tasks is None):
        raise RequestError(422, "name the task: give 'task' (one name) or 'tasks' (a list), not both")
    names = [body.task] if body.task is not None else list(dict.fromkeys(body.tasks))
    if len(body.texts) + len(body.unlabeled) > config.max_texts:
        raise RequestError(413, f"{len(body.texts) + len(body.unlabeled)} texts in one request (unlabeled ones included), "
                                f"at most {config.max_texts}: split it")
    blank = next((i for i, t in enumerate(body.texts) if not t.strip()), None)
    if blank is not None:
        raise RequestError(422, f"texts.{blank}: the text is blank: send text to classify")
    return Job(list(body.texts), names, body.lang, list(body.unlabeled), body.top_k, body.min_confidence)

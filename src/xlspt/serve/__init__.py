"""Serve many saved prompts, ensembles and probes from one frozen model over HTTP (``xlspt serve``).

:func:`serve` checks the tasks, listens, loads the model once in the background (``/readyz``
answers 200 when done) and scores requests that arrive together in shared passes
(:mod:`xlspt.serve.app`, :mod:`xlspt.serve.tasks`). SIGTERM or Ctrl-C stop it after the
requests in flight are answered.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Mapping

from ..errors import XlsptError
from ..network import is_loopback_host
from ..pipeline import LoadOptions
from .config import API_KEY_ENV, ServeConfig
from .tasks import Job, RequestError, TaskSet, task_sources

logger = logging.getLogger(__name__)

__all__ = ["API_KEY_ENV", "Job", "RequestError", "ServeConfig", "TaskSet", "serve", "task_sources"]


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it a response's body waits for the client's delayed ACK of
        # its headers (about 40 ms a request on keep-alive connections on Linux).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise XlsptError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port or --host") from None
    sock.setblocking(False)
    return sock


def serve(sources: Mapping[str, str], config: ServeConfig = ServeConfig(), *, load: LoadOptions = LoadOptions(),
          api_key: str | None = None) -> None:
    """Host the tasks of ``sources`` (name -> folder or Hub id) until SIGTERM or Ctrl-C."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise XlsptError("xlspt serve needs FastAPI and uvicorn: pip install -e '.[serve]' in the xlspt clone") from None
    from .app import create_app

    folders = TaskSet.check_sources(sources, load)  # a missing folder or a model mismatch ends here, before listening
    if not is_loopback_host(config.host) and not api_key:
        logger.warning(f"warning: listening on {config.host} without an API key: anyone who reaches this address can use the "
                       f"model (set --api-key or ${API_KEY_ENV})")
    sock = _listen(config.host, config.port)
    port = sock.getsockname()[1]
    failure: list[BaseException] = []

    def load_tasks() -> TaskSet:
        started = time.perf_counter()
        tasks = TaskSet.load({name: str(folder) for name, folder in folders.items()}, load, config.batch_size)
        logger.info(f"ready: {len(tasks.tasks)} tasks ({', '.join(tasks.tasks)}) on {tasks.model.name} "
                    f"in {time.perf_counter() - started:.0f} s")
        return tasks

    def on_fatal(exc: BaseException) -> None:
        failure.append(exc)
        server.should_exit = True

    app = create_app(load_tasks, config, api_key=api_key, on_fatal=on_fatal)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    host = f"[{config.host}]" if ":" in config.host else config.host
    logger.info(f"listening on http://{host}:{port} (loading {len(sources)} tasks; GET /readyz answers 200 when ready)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        logger.info(f"stopped: {app.state.xlspt.batcher.served if app.state.xlspt.batcher else 0} requests answered")
    if failure:
        raise failure[0] if isinstance(failure[0], XlsptError) else XlsptError(
            f"could not load the tasks ({failure[0].__class__.__name__}: {failure[0]})")

"""Where a sweep's runs execute, behind one interface: in this process, or as Ray tasks.

:class:`LocalExecutor` runs the claimed runs group by group in this process. :class:`RayExecutor`
runs them as Ray tasks, on a local Ray instance on this machine or an existing cluster: one task per group of runs that share a model and a training sample (they train together),
and one per run with the model trained too. Ray reuses its worker processes, so each worker
keeps its loaded model between tasks (:data:`_WORKER_SESSION`). Every task claims its runs in
the store and writes their records itself, so the store must be on a filesystem all nodes see.

A local instance listens on the loopback address only (:func:`ray_instance`), needs Ray's token
authentication (its token in a file only its owner reads), runs without the dashboard or usage
reporting, with a small object store (tasks pass only configs), and is shut down at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

from ..errors import XlsptError
from ..files import cache_dir
from ..logs import muted
from ..network import is_loopback_host
from .records import RunRecord
from .runner import PlannedRun, Session, run_group, unit_key
from .store import ResultStore

logger = logging.getLogger(__name__)


class Executor(str, Enum):
    """Where runs execute: in this process, or as Ray tasks (a local instance or a cluster)."""

    LOCAL = "local"
    RAY = "ray"


def executor_for(kind: Executor | str, *, ray_address: str | None = None) -> "LocalExecutor | RayExecutor":
    """The executor of ``kind``; both run claimed runs through :func:`~xlspt.study.runner.run_group`."""
    return LocalExecutor() if Executor(kind) is Executor.LOCAL else RayExecutor(ray_address)


def work_units(todo: list[PlannedRun]) -> list[list[PlannedRun]]:
    """The one rule of both executors: the units of work, runs best run by one worker together (frozen runs of a
    model whose first prompts train together, :func:`~xlspt.study.runner.unit_key`; each run that trains the model
    alone). An executor hands a worker one unit (Ray) or all units of a model at once (local)."""
    groups: dict[tuple, list[PlannedRun]] = {}
    for run in todo:
        groups.setdefault(unit_key(run), []).append(run)
    return list(groups.values())


class LocalExecutor:
    """Runs the units in this process, all units of a model together: one model load, and every prompt of the
    model scored in one pass over each language's text."""

    def run(self, todo: list[PlannedRun], store: ResultStore, session: Session, *, retry_failed: bool) -> None:
        run_local(todo, store, session, retry_failed=retry_failed, total=len(todo))


class RayExecutor:
    """Runs the units as Ray tasks, one unit a task, on a local instance or on the cluster at ``address``."""

    def __init__(self, address: str | None = None):
        self.address = address

    def run(self, todo: list[PlannedRun], store: ResultStore, session: Session, *, retry_failed: bool) -> None:
        run_on_ray(todo, store, address=self.address, retry_failed=retry_failed, device=session.device)


def model_groups(units: list[list[PlannedRun]], dtype_of: Callable[[PlannedRun], str],
                 order: list[PlannedRun]) -> list[list[PlannedRun]]:
    """Units of work merged by (model, dtype): one model load per group, its runs in ``order`` (the order of the
    prompts packed into one pass shapes bfloat16's rounding: a sweep's results must not depend on the grouping)."""
    position = {run.run_id: i for i, run in enumerate(order)}
    groups: dict[tuple, list[PlannedRun]] = {}
    for unit in units:
        groups.setdefault((unit[0].config.model, dtype_of(unit[0])), []).extend(unit)
    return [sorted(group, key=lambda run: position[run.run_id]) for group in groups.values()]


def run_local(todo: list[PlannedRun], store: ResultStore, session: Session, *, retry_failed: bool, total: int) -> None:
    """Run the claimed runs group by group in this process."""
    finished = [0]

    def on_record(record: RunRecord) -> None:
        store.write_record(record)
        finished[0] += 1
        logger.info(f"[{finished[0]}/{total}] {record.describe()}")

    for group in model_groups(work_units(todo), lambda run: run.config.resolved_dtype(session.device), todo):
        with store.claim([r.run_id for r in group], retry_failed=retry_failed) as owned:
            mine = [r for r in group if r.run_id in set(owned)]
            if len(mine) < len(group):
                logger.info(f"{len(group) - len(mine)} run(s) of this group are done or running elsewhere: skipped")
            run_group(mine, session, on_record)


#: How a run that a Ray task could not finish is reported (it stays in the store as not done).
PENDING = "left pending"
#: Object store of a local instance: tasks exchange configs and a few counts, not tensors.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
_WORKER_SESSION: Session | None = None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise XlsptError("--executor ray needs Ray: pip install -e '.[ray]' in the xlspt clone (or use --executor local)") from None
    return ray


def _run_task(configs: list[dict], run_ids: list[str], store_root: str, retry_failed: bool, device: str | None) -> list[str]:
    """Body of one Ray task: claim the runs, run them, write their records; returns the lines to log."""
    global _WORKER_SESSION
    from .config import RunConfig
    from .runner import plan

    if _WORKER_SESSION is None or _WORKER_SESSION.device != device:
        _WORKER_SESSION = Session(device=device, progress=False)
    session = _WORKER_SESSION
    store = ResultStore(store_root)
    planned = [plan(RunConfig.from_mapping(c), session, store.run_dir) for c in configs]
    lines: list[str] = []
    for run, expected in zip(planned, run_ids):
        if run.run_id != expected:  # never dropped silently: the driver says it stays pending
            lines.append(f"{expected}: this worker computes run id {run.run_id} for its settings (does it see other "
                         f"data or another model at {run.config.data} and {run.config.model}?): {PENDING}")
    planned = [p for p, expected in zip(planned, run_ids) if p.run_id == expected]
    node = _ray_node()

    def on_record(record: RunRecord) -> None:
        store.write_record(record)
        lines.append(f"{record.describe()} [node {node}]")

    with store.claim([p.run_id for p in planned], retry_failed=retry_failed) as owned, muted():  # the driver logs
        run_group([p for p in planned if p.run_id in set(owned)], session, on_record)
    return lines


def _ray_node() -> str:
    """The first characters of the Ray node id this task runs on (several nodes may share a host name), and the
    GPUs Ray gave it, if any."""
    import ray

    gpus = ray.get_gpu_ids()
    return ray.get_runtime_context().get_node_id()[:8] + (f", GPU {','.join(map(str, gpus))}" if gpus else "")


def _config_dict(run: PlannedRun) -> dict:
    """The run's settings for a task, with a local data folder made absolute: a worker started from another working
    directory must read the same files (and so computes the same run id, which names the data by its content)."""
    from dataclasses import fields
    from enum import Enum

    out = {}
    for f in fields(run.config):
        value = getattr(run.config, f.name)
        out[f.name] = value.value if isinstance(value, Enum) else (list(value) if isinstance(value, tuple) else value)
    data = run.config.data
    if data and not data.startswith("hf:"):
        out["data"] = str(Path(data).expanduser().resolve())
    return out


def run_on_ray(
    todo: list[PlannedRun], store: ResultStore, *, address: str | None, retry_failed: bool, device: str | None,
) -> None:
    """Run ``todo`` as Ray tasks and wait for them; a local instance is started and stopped here."""
    with ray_instance(address) as ray:
        _run_tasks(ray, todo, store, retry_failed=retry_failed, device=device)


#: Ray reads this once, at import: 0 keeps it from swapping 127.0.0.1 for the machine's outbound address
#: (``ray/_private/services.py``, ``resolve_ip_for_localhost`` and ``get_node_ip_address``). Every Ray
#: server then binds to 127.0.0.1: the C++ gRPC servers listen on 127.0.0.1 exactly when their node address is
#: the literal "127.0.0.1", else on 0.0.0.0 (``src/ray/rpc/grpc_server.cc``), and the runtime-env agent binds
#: to the node address itself.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK = "127.0.0.1"


def is_loopback(address: str | None) -> bool:
    """Whether a Ray address (``host:port``, ``ray://host:port``) names this machine's loopback interface."""
    if not address:
        return False
    return is_loopback_host(address.split("://", 1)[-1].rsplit(":", 1)[0])


def auth_token_file() -> Path:
    """Ray's token for local instances: created once, readable by its owner only (Ray's own would be world-readable)."""
    folder = cache_dir("ray")
    folder.chmod(0o700)
    token = folder / "auth_token"
    if not token.is_file() or not token.read_text(encoding="utf-8").strip():
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    token.chmod(0o600)
    return token


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in the environment (so Ray's processes inherit them), the old ones back at exit."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _instance_environment(address: str | None) -> dict[str, str]:
    """What Ray's processes need in their environment: loopback for a local instance or a loopback address,
    and for a local instance token authentication with our owner-only token file (unless the user gave one)."""
    values = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}
    if address is None or is_loopback(address):
        values.update(LOOPBACK_ONLY)
    if address is None:
        values["RAY_AUTH_MODE"] = "token"
        if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
            values["RAY_AUTH_TOKEN_PATH"] = str(auth_token_file())
    return values


def _reload_auth_settings() -> None:
    """Make this process read Ray's authentication settings from the environment again: Ray caches its config
    and the token it loaded (``ray/_private/authentication_test_utils.py`` resets them the same way)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication
        return
    Config.initialize("")  # the config first: a draining gRPC thread may reload the token
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _loopback_constant(ray) -> Iterator[None]:
    """Ray's loopback switch as :data:`LOOPBACK_ONLY` sets it, also when Ray was imported before it was set
    (``ray_constants.ENABLE_RAY_CLUSTER`` is read at call time); the old value back at exit."""
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):  # a Ray that never swaps loopback addresses
        yield
        return
    before, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def ray_instance(address: str | None = None, *, num_cpus: int | None = None) -> Iterator:
    """Ray, connected to the cluster at ``address``, or a local instance started here on the loopback address
    with token authentication (shut down at exit). Yields the ``ray`` module."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray  # the caller's own Ray: used as it is (its environment and auth untouched), left running
        return
    values = _instance_environment(address)
    with contextlib.ExitStack() as stack:
        stack.callback(_reload_auth_settings)  # last, once the old environment is back
        stack.enter_context(_environment(values))
        _reload_auth_settings()
        if LOOPBACK_ONLY.keys() <= values.keys():
            stack.enter_context(_loopback_constant(ray))
        options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     _node_ip_address=LOOPBACK, **options)
        stack.callback(ray.shutdown)
        yield ray


def _run_tasks(ray, todo: list[PlannedRun], store: ResultStore, *, retry_failed: bool, device: str | None) -> None:
    """Run ``todo`` as Ray tasks, one unit of work each, logging each finished run."""
    gpus = ray.cluster_resources().get("GPU", 0)
    # A task whose worker dies (killed, out of memory) runs once more; its finished runs are kept, the rest retried.
    task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=1)(_run_task)
    groups = work_units(todo)
    logger.info(f"ray: {len(groups)} task(s) on {ray.cluster_resources().get('CPU', 0):.0f} CPUs"
                f"{f' and {gpus:.0f} GPUs' if gpus else ''}")
    pending = {
        task.remote([_config_dict(r) for r in group], [r.run_id for r in group], str(store.root.resolve()),
                    retry_failed, device): group
        for group in groups
    }
    finished = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        group = pending.pop(ready[0])
        try:
            lines = ray.get(ready[0])
        except Exception as exc:  # a task that died (not a failed run: those are records)
            lines = [f"task for {len(group)} run(s) ended abnormally: {exc.__class__.__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''}; its runs are {PENDING}"]
        for line in lines:
            finished += not line.endswith(PENDING)  # a run left pending is not finished
            logger.info(f"[{finished}/{len(todo)}] {line}")

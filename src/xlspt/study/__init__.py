"""The study as a program: one run config, sweep specs, a kill-safe result store and executors."""

from ..engine.options import Engine, SpecialTokens
from ..models.devices import DType
from .config import RunConfig
from .records import RunRecord, RunStatus
from .runner import Session, run_one
from .spec import SweepSpec, expand, load_spec, preset_path
from .store import ResultStore
from .sweep import Executor, SweepStatus, run_sweep, sweep_status

__all__ = [
    "DType", "Engine", "Executor", "ResultStore", "RunConfig", "RunRecord", "RunStatus", "Session", "SpecialTokens",
    "SweepSpec", "SweepStatus", "expand", "load_spec", "preset_path", "run_one", "run_sweep", "sweep_status",
]

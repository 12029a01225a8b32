"""The distributed path's safety: a local Ray instance listens on the loopback address only, needs
Ray's token authentication with a token file only its owner reads, and leaves no process behind.

Every listening socket of every Ray process (and of this process, Ray's driver) is read with
psutil while the instance runs; any address but loopback fails the test.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time

import pytest

from xlspt.cli import main
from xlspt.study.executors import auth_token_file, is_loopback, ray_instance
from xlspt.study.store import ResultStore

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
RAY_PROCESS = ("gcs_server", "raylet", "ray::", "default_worker.py", "runtime_env", "dashboard", "log_monitor", "monitor.py")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XLSPT_CACHE", str(tmp_path / "cache"))


def ray_listeners() -> set[tuple[str, str, int]]:
    """(process, address, port) of every listening TCP socket of a Ray process or of this one."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        if proc.pid != os.getpid() and not any(name in command for name in RAY_PROCESS):
            continue
        try:
            sockets = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        name = "this process" if proc.pid == os.getpid() else command.split()[0].rsplit("/", 1)[-1]
        found |= {(name, s.laddr.ip, s.laddr.port) for s in sockets if s.status == psutil.CONN_LISTEN}
    return found


def no_ray_process_left(timeout: float = 20.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True).stdout.strip():
            return True
        time.sleep(0.5)
    return False


class Watcher(threading.Thread):
    """Reads the Ray listeners every half second while a sweep runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.seen |= ray_listeners()
            self.stop.wait(0.5)


def test_loopback_addresses_are_recognised():
    assert is_loopback("127.0.0.1:6379") and is_loopback("ray://localhost:10001") and is_loopback("[::1]:6379")
    assert not is_loopback("10.0.0.5:6379") and not is_loopback("head:6379") and not is_loopback(None)


def test_local_instance_listens_on_loopback_only_with_an_owner_only_token():
    with ray_instance(num_cpus=1) as ray_module:
        assert ray_module.get(ray_module.remote(lambda: os.environ["RAY_AUTH_MODE"]).remote()) == "token"
        listeners = ray_listeners()
        token = auth_token_file()
        assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token)
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet", "this process"} <= names, listeners
    exposed = {item for item in listeners if item[1] not in LOOPBACK}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert "RAY_AUTH_TOKEN_PATH" not in os.environ  # the environment is put back
    assert no_ray_process_left()


def test_sweep_on_ray_listens_on_loopback_only(tmp_path, tiny_model_dirs, sib200_dir):
    from test_study import _tiny_spec

    spec = _tiny_spec(tmp_path, tiny_model_dirs["llama"], sib200_dir, "freeze: [true, false]\n")
    watcher = Watcher()
    watcher.start()
    try:
        assert main(["sweep", str(spec), "--store", str(tmp_path / "ray"), "--quiet", "--executor", "ray"]) == 0
    finally:
        watcher.stop.set()
        watcher.join()
    assert len(ResultStore(tmp_path / "ray").records()) == 16
    workers = {name for name, _, _ in watcher.seen if name not in ("gcs_server", "raylet", "this process")}
    assert workers, f"no Ray worker was seen listening: {watcher.seen}"
    exposed = {item for item in watcher.seen if item[1] not in LOOPBACK}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert no_ray_process_left()


def _relative_spec(folder, model_dir, sib200_dir) -> str:
    """The tiny grid with ``data`` relative to ``folder`` (the driver's working directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(
        f"model: {model_dir}\ndata: {os.path.relpath(sib200_dir, folder)}\ndtype: float32\nshots: 2\nepochs: 2\n"
        "prompt_length: [1, 3]\nreparam_hidden: [0, 8]\nseed: [0, 1]\nfreeze: [true, false]\nlangs: eng_Latn,fra_Latn\n")
    return "spec.yaml"


def test_a_two_node_cluster_runs_every_run_on_both_nodes_as_the_local_sweep_does(
        tmp_path, tiny_model_dirs, sib200_dir, monkeypatch, capsys):
    from ray.cluster_utils import Cluster

    from xlspt.study.executors import LOOPBACK_ONLY, _reload_auth_settings

    driver, nodes = tmp_path / "driver", tmp_path / "nodes"
    spec = _relative_spec(driver, tiny_model_dirs["llama"], sib200_dir)
    nodes.mkdir()
    for name, value in {**LOOPBACK_ONLY, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(auth_token_file()),
                        "RAY_USAGE_STATS_ENABLED": "0"}.items():
        monkeypatch.setenv(name, value)
    _reload_auth_settings()
    monkeypatch.chdir(nodes)  # the nodes start from another working directory than the driver's
    node = dict(node_ip_address="127.0.0.1", num_cpus=1, object_store_memory=128 * 1024**2)
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        monkeypatch.chdir(driver)
        store = tmp_path / "shared-store"  # one path every node sees
        capsys.readouterr()
        assert main(["sweep", spec, "--store", str(store), "--executor", "ray", "--ray-address", cluster.address]) == 0
        log = capsys.readouterr().err
    finally:
        cluster.shutdown()
        monkeypatch.undo()
        _reload_auth_settings()
    used = {line.rsplit("[node ", 1)[1].rstrip("]") for line in log.splitlines() if "[node " in line}
    assert len(used) == 2, f"tasks ran on {used}:\n{log}"
    assert "left pending" not in log
    monkeypatch.chdir(driver)
    assert main(["sweep", spec, "--store", str(tmp_path / "local"), "--quiet"]) == 0
    on_cluster = {r.run_id: r.results for r in ResultStore(store).records()}
    here = {r.run_id: r.results for r in ResultStore(tmp_path / "local").records()}
    assert len(here) == 16 and on_cluster.keys() == here.keys()
    for run_id, results in here.items():
        assert [(r["language"], r["accuracy"]) for r in results] == \
               [(r["language"], r["accuracy"]) for r in on_cluster[run_id]], run_id
    assert no_ray_process_left()

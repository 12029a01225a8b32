"""The distributed path's safety: a local Ray instance listens on the loopback address only, needs
Ray's token authentication with a token file only its owner reads, and leaves no process behind.

Every listening socket of every Ray process (and of this process, Ray's driver) is read with
psutil while the instance runs; any address but loopback fails the test.
"""

from __future__ import annotations

import os
import signal
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


def cluster_environment(monkeypatch) -> None:
    """What the processes of a test cluster need (as ``ray start`` would be given): loopback only, token
    authentication with our token file; ``monkeypatch.undo()`` and a reload put it back."""
    from xlspt.study.executors import LOOPBACK_ONLY, _reload_auth_settings

    for name, value in {**LOOPBACK_ONLY, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(auth_token_file()),
                        "RAY_USAGE_STATS_ENABLED": "0"}.items():
        monkeypatch.setenv(name, value)
    _reload_auth_settings()


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

    from xlspt.study.executors import _reload_auth_settings

    driver, nodes = tmp_path / "driver", tmp_path / "nodes"
    spec = _relative_spec(driver, tiny_model_dirs["llama"], sib200_dir)
    nodes.mkdir()
    cluster_environment(monkeypatch)
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
    assert "GPU" not in log  # none advertised, none asked for
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


def test_tasks_ask_for_a_gpu_where_the_cluster_has_one_and_fall_back_to_the_cpu(
        tmp_path, tiny_model_dirs, sib200_dir, monkeypatch, capsys):
    """A node that advertises a (fake) GPU: every task asks for one and gets it; ``--device auto`` inside the task
    finds no CUDA in this CPU build of torch and runs on the CPU, as the records say."""
    from ray.cluster_utils import Cluster

    from xlspt.study.executors import _reload_auth_settings

    spec = _relative_spec(tmp_path, tiny_model_dirs["llama"], sib200_dir)
    cluster_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        node_ip_address="127.0.0.1", num_cpus=1, num_gpus=1, object_store_memory=128 * 1024**2, include_dashboard=False))
    try:
        cluster.wait_for_nodes()
        capsys.readouterr()
        assert main(["sweep", spec, "--store", str(tmp_path / "store"), "--executor", "ray",
                     "--ray-address", cluster.address, "--device", "auto"]) == 0
        log = capsys.readouterr().err
    finally:
        cluster.shutdown()
        monkeypatch.undo()
        _reload_auth_settings()
    assert "and 1 GPUs" in log
    lines = [line for line in log.splitlines() if "[node " in line]
    assert len(lines) == 16 and all(", GPU 0]" in line for line in lines), log
    records = ResultStore(tmp_path / "store").records()
    assert len(records) == 16 and {r.device["device"] for r in records} == {"cpu"}
    assert no_ray_process_left()


def _start_sweep(spec, store, *extra) -> subprocess.Popen:
    import sys

    return subprocess.Popen([sys.executable, "-m", "xlspt.cli", "sweep", str(spec), "--store", str(store), "--quiet",
                             "--executor", "ray", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=spec.parent)  # the spec's data path is relative to its folder


def _status(spec, store) -> dict:
    import json
    import sys

    out = subprocess.run([sys.executable, "-m", "xlspt.cli", "sweep", str(spec), "--store", str(store), "--status",
                          "--json"], capture_output=True, text=True, check=True, cwd=spec.parent).stdout
    return json.loads(out)


def _task_workers() -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if "ray::_run_task" in " ".join(p.info["cmdline"] or [])]


def _wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _first_task_worker(sweep: subprocess.Popen):
    """The first Ray worker seen running a task of ``sweep``; the sweep's output if it ended before one ran."""
    found = _wait_for(lambda: _task_workers() or sweep.poll() is not None, 120, "a Ray worker running a task")
    assert isinstance(found, list), f"the sweep ended first:\n{sweep.stdout.read()}"
    return found[0]


def test_a_killed_worker_is_retried_and_the_sweep_finishes_with_every_run_once(tmp_path, tiny_model_dirs, sib200_dir):
    spec = _relative_spec(tmp_path, tiny_model_dirs["llama"], sib200_dir)
    spec, store = tmp_path / spec, tmp_path / "store"
    sweep = _start_sweep(spec, store)
    victim = _first_task_worker(sweep)
    counts = _status(spec, store)
    victim.kill()  # kill -9, in the middle of its task
    seen = [counts]
    while sweep.poll() is None:
        seen.append(_status(spec, store))
    log = sweep.stdout.read()
    assert sweep.returncode == 0, log
    final = _status(spec, store)
    assert final == {"total": 16, "done": 16, "running": 0, "failed": 0, "pending": 0}, (final, log)
    for counts in seen:  # right throughout: every run counted once, done never going back
        assert sum(counts[k] for k in ("done", "running", "failed", "pending")) == 16 and counts["failed"] == 0
    assert [c["done"] for c in seen] == sorted(c["done"] for c in seen)
    records = ResultStore(store).records()
    assert len(records) == len({r.run_id for r in records}) == 16
    finished = [line.split("] ", 1)[1].split(" ", 1)[0] for line in log.splitlines() if "[node " in line]
    assert len(finished) == len(set(finished)) == 16, log  # none run twice
    assert no_ray_process_left()


def test_a_killed_driver_leaves_no_ray_process_and_the_next_sweep_resumes(tmp_path, tiny_model_dirs, sib200_dir):
    spec = _relative_spec(tmp_path, tiny_model_dirs["llama"], sib200_dir)
    spec, store = tmp_path / spec, tmp_path / "store"
    sweep = _start_sweep(spec, store)
    _first_task_worker(sweep)
    sweep.kill()
    sweep.wait()
    assert no_ray_process_left(30), "Ray processes outlived the killed driver"
    counts = _status(spec, store)
    assert counts["running"] == 0 and counts["done"] < 16
    again = _start_sweep(spec, store)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    assert _status(spec, store) == {"total": 16, "done": 16, "running": 0, "failed": 0, "pending": 0}
    assert no_ray_process_left()


def test_label_on_a_two_node_cluster_survives_a_killed_worker_and_gives_the_local_rows(
        tmp_path, tiny_model_dirs, sib200_dir, monkeypatch, capsys):
    """`xlspt label --executor ray` on two loopback nodes: a worker killed with SIGKILL in the middle of a shard is
    started again and its shard labelled from the start; every row comes out once, as a local job labels it."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.cluster_utils import Cluster

    from xlspt.study.executors import _reload_auth_settings

    run = tmp_path / "topics"
    assert main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--out", str(run), "--epochs", "1", "--shots", "2", "--quiet", "--dtype", "float32", "--langs", "eng_Latn"]) == 0
    texts = pd.read_csv(sib200_dir / "eng_Latn" / "test.tsv", sep="\t")["text"].tolist()
    rows = pd.DataFrame({"doc": [f"r{i}" for i in range(1600)], "text": [texts[i % len(texts)] for i in range(1600)]})
    (tmp_path / "in").mkdir()
    for k in range(4):
        pq.write_table(pa.Table.from_pandas(rows[k * 400:(k + 1) * 400], preserve_index=False), tmp_path / "in" / f"{k}.parquet")
    args = ["label", "--quiet", "--task", f"topics={run}", "--input", str(tmp_path / "in"), "--id-column", "doc",
            "--chunk-rows", "4", "--batch-size", "2"]
    out = tmp_path / "on-ray"
    killed: list[int] = []

    def kill_a_worker_mid_shard() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if list(out.glob(".*.tmp")):
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "_ShardWorker.label" in " ".join(proc.info["cmdline"] or []):
                        os.kill(proc.pid, signal.SIGKILL)
                        killed.append(proc.pid)
                        return
            time.sleep(0.05)

    cluster_environment(monkeypatch)
    node = dict(node_ip_address="127.0.0.1", num_cpus=1, object_store_memory=128 * 1024**2)
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    killer, watcher = threading.Thread(target=kill_a_worker_mid_shard, daemon=True), Watcher()
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        capsys.readouterr()
        killer.start()
        watcher.start()
        assert main([*args, "--output", str(out), "--executor", "ray", "--ray-address", cluster.address]) == 0
        log = capsys.readouterr().err
    finally:
        killer.join()
        watcher.stop.set()
        watcher.join()
        cluster.shutdown()
        monkeypatch.undo()
        _reload_auth_settings()
    assert killed, "no worker was seen labelling"
    exposed = {item for item in watcher.seen if item[1] not in LOOPBACK}
    assert not exposed, f"listening beyond loopback: {exposed}"
    used = {line.rsplit("[node ", 1)[1].rstrip("]") for line in log.splitlines() if "[node " in line}
    assert len(used) == 2, f"shards were labelled on {used}:\n{log}"
    assert main([*args, "--output", str(tmp_path / "here")]) == 0
    on_ray, here = (pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)
                    for folder in (out, tmp_path / "here"))
    assert on_ray["doc"].is_unique and len(on_ray) == 1600
    pd.testing.assert_frame_equal(on_ray, here)
    assert not list(out.rglob("*.tmp"))
    assert no_ray_process_left()

"""Throughput and latency of `xlspt serve` on the embedded model, three tasks, clients on loopback.

    python benchmarks/bench_serve.py                 # trains the three tasks once into --work, then measures
    python benchmarks/bench_serve.py --json out.json # also the table as JSON

Three tasks on the embedded Gemma 3 270M (trained once with the defaults):
`topics` (a 4-vector prompt, SIB-200 topics), `coarse` (a 4-vector prompt on the coarse topics of
examples/coarse_topics.py) and `voted` (an ensemble of two 4-vector prompts, content-free calibration).
Each client sends one request at a time (keep-alive), each request one SIB-200 test sentence for one
task, the tasks in turn, a fixed number of requests per client: a bounded load.

Three ways to serve the same requests, at 1, 8 and 32 concurrent clients:
  - batched: one server, requests that arrive together share a pass (the default 5 ms window);
  - one at a time: one server, `--max-batch-requests 1 --batch-window-ms 0`;
  - one process per task: three servers of one task each, one request at a time (what a user had before
    `xlspt serve`: one process per prompt), each client speaking to its task's server; with torch's default
    threads (as a user starts them), and with `--threads 1` each.
Reported: texts per second answered over the whole load, the p50/p99 latency of an answered request, and the
requests that failed (504: no answer within the server's 30 s timeout).
The clients set TCP_NODELAY, as curl does; the server's own sockets have it too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("topics", "coarse", "voted")
LANGS = ("eng_Latn", "fra_Latn", "swh_Latn", "zho_Hans", "hin_Deva", "arb_Arab", "yor_Latn", "rus_Cyrl")


def xlspt(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "xlspt.cli", *args], check=True)


def train_tasks(work: Path, data: Path) -> dict[str, Path]:
    """The three tasks, trained once into ``work`` (kept between runs of the benchmark)."""
    runs = {name: work / name for name in TASKS}
    common = ["--quiet", "--langs", "eng_Latn", "--overwrite"]
    if not (runs["topics"] / "prompt.json").is_file():
        xlspt("run", "--data", str(data), "--out", str(runs["topics"]), *common)
    if not (runs["voted"] / "prompt.json").is_file():
        xlspt("run", "--data", str(data), "--out", str(runs["voted"]), "--ensemble", "2", "--calibration", "content-free", *common)
    if not (runs["coarse"] / "prompt.json").is_file():
        csv = work / "coarse-topics.csv"
        subprocess.run([sys.executable, str(ROOT / "examples" / "coarse_topics.py"), str(data), str(csv)], check=True)
        xlspt("run", "--data", str(csv), "--text-column", "sentence", "--label-column", "topic", "--language-column", "lang",
              "--split-column", "split", "--out", str(runs["coarse"]), *common)
    return runs


class Server:
    """`xlspt serve` on a free loopback port, its log in ``log``."""

    def __init__(self, *args: str, log: Path):
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "xlspt.cli", "serve", "--port", "0", *args],
                                        stderr=open(log, "w"), text=True)
        self.port, deadline = None, time.monotonic() + 600
        while self.port is None or "ready:" not in log.read_text():
            found = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text())
            self.port = int(found.group(1)) if found else None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def connect(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection without Nagle's delay: http.client sends headers and body in two writes, and
    the second would wait for the server's delayed acknowledgement (about 40 ms on Linux), as curl's would not."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def send(connection: http.client.HTTPConnection, body: str) -> http.client.HTTPResponse:
    connection.request("POST", "/v1/classify", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response


def run_load(ports: dict[str, int], texts: list[str], clients: int, per_client: int) -> dict:
    """``clients`` threads, each sending ``per_client`` one-text requests in turn over the tasks."""

    def client(c: int) -> list[float]:
        connections = {port: connect(port) for port in set(ports.values())}
        latencies = []
        for r in range(per_client):
            task = TASKS[(c + r) % len(TASKS)]
            body = json.dumps({"task": task, "texts": [texts[(c * per_client + r) % len(texts)]]})
            started = time.perf_counter()
            try:
                response = send(connections[ports[task]], body)
            except (ConnectionError, http.client.HTTPException):  # an idle keep-alive connection the server closed
                connections[ports[task]] = connect(ports[task])
                response = send(connections[ports[task]], body)
            latencies.append((response.status, time.perf_counter() - started))
        for connection in connections.values():
            connection.close()
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = [a for one in pool.map(client, range(clients)) for a in one]
    seconds = time.perf_counter() - started
    latencies = [t for status, t in answers if status == 200]
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"texts_per_s": len(latencies) / seconds, "p50_ms": 1000 * quantiles[49], "p99_ms": 1000 * quantiles[98],
            "requests": len(answers), "errors": len(answers) - len(latencies), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "sib200"))
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "xlspt" / "bench-serve"))
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=192, help="requests per load (split over the clients)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = train_tasks(work, Path(args.data))
    texts = [t for lang in LANGS for t in pd.read_csv(Path(args.data) / lang / "test.tsv", sep="\t")["text"][:40]]
    task_args = [a for name in TASKS for a in ("--task", f"{name}={runs[name]}")]
    one_at_a_time = ["--max-batch-requests", "1", "--batch-window-ms", "0"]
    ways = {
        "batched": lambda: [Server(*task_args, log=work / "batched.log")],
        "one at a time": lambda: [Server(*task_args, *one_at_a_time, log=work / "one-at-a-time.log")],
        "one process per task": lambda: [Server("--task", f"{name}={runs[name]}", *one_at_a_time, log=work / f"{name}.log")
                                         for name in TASKS],
        "one process per task, 1 thread each": lambda: [
            Server("--task", f"{name}={runs[name]}", *one_at_a_time, "--threads", "1", log=work / f"{name}.log") for name in TASKS],
    }
    rows = []
    for way, start in ways.items():
        servers = start()
        ports = {name: servers[i if len(servers) > 1 else 0].port for i, name in enumerate(TASKS)}
        try:
            run_load(ports, texts, 4, 3)  # warm-up
            for clients in [int(c) for c in args.clients.split(",")]:
                result = run_load(ports, texts, clients, max(1, args.requests // clients))
                rows.append({"way": way, "clients": clients, **result})
                print(f"{way:>36} {clients:>3} clients: {result['texts_per_s']:6.1f} texts/s, "
                      f"p50 {result['p50_ms']:7.0f} ms, p99 {result['p99_ms']:7.0f} ms, {result['errors']} errors", flush=True)
        finally:
            for server in servers:
                server.stop()
    table = pd.DataFrame(rows)
    base = table[table["way"] == "one at a time"].set_index("clients")["texts_per_s"]
    table["speedup"] = [r.texts_per_s / base[r.clients] for r in table.itertuples()]
    print()
    print("| way | clients | texts/s | p50 (ms) | p99 (ms) | failed (504) | vs one at a time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in table.itertuples():
        print(f"| {r.way} | {r.clients} | {r.texts_per_s:.1f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.errors} of {r.requests} | "
              f"{r.speedup:.2f}x |")
    if args.json:
        Path(args.json).write_text(table.to_json(orient="records", indent=1))


if __name__ == "__main__":
    main()

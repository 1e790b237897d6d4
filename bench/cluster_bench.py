#!/usr/bin/env python3
"""Aggregate Fetch throughput of 1, 2 and 3 local tensorcast servers run as
one cluster, through tensorcast-load, each against a plain TCP transfer over
loopback timed in the same run:

    .venv/bin/python bench/cluster_bench.py [--build build] [--nodes 1,2,3]
        [--size 16MiB] [--workers-per-node 2] [--seconds 3] [--runs 3]

For N nodes it starts N servers on loopback (--node-id nI, --cluster
listing the N), and runs `tensorcast-load --server=A,B,... --scenario=fetch
--format=raw` with --workers-per-node x N workers (each node's workers fetch
a tensor made on that node; --connections=--workers-per-node, so each
worker has a connection of its own to its node). The baseline is
`tensorcast-bench-suite-client tcp --bytes=B` (one C++ loopback connection,
pre-faulted buffers: {"seconds": S}), timed before each round. Prints the
median aggregate GB/s of each N (min-max over the runs), the median of its
ratios to the TCP figure of the same round, its ratio to one node, and the
median GB/s of each node.
Figures in bench/README.md ("Several servers").

Every process shares the machine's cores: on a machine with few cores the
servers, the load tool and its workers compete, and more nodes cannot add
throughput; the ratio to TCP says how far the aggregate is from one
connection's limit.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]

UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_size(text: str) -> int:
    for unit in sorted(UNITS, key=len, reverse=True):
        if unit and text.endswith(unit):
            return int(float(text[: -len(unit)]) * UNITS[unit])
    return int(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """N tensorcast-server processes on loopback, one cluster."""

    def __init__(self, bin_dir: pathlib.Path, nodes: int, workdir: str):
        self.addresses = [f"127.0.0.1:{free_port()}" for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes]] = []
        members = ",".join(self.addresses)
        for i, address in enumerate(self.addresses):
            port_file = os.path.join(workdir, f"port{nodes}-{i}")
            log = open(os.path.join(workdir, f"server{nodes}-{i}.log"), "wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        str(bin_dir / "tensorcast-server"),
                        f"--listen={address}",
                        f"--node-id=n{i}",
                        f"--cluster={members}",
                        "--cluster-probe-ms=200",
                        f"--port-file={port_file}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        deadline = time.monotonic() + 30
        for i in range(nodes):
            port_file = os.path.join(workdir, f"port{nodes}-{i}")
            while not os.path.exists(port_file) or not open(port_file).read():
                if self.procs[i].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server n{i} did not start (see {workdir})")
                time.sleep(0.05)

    @property
    def target(self) -> str:
        return ",".join(self.addresses)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_load(bin_dir: pathlib.Path, args: list[str], json_path: str) -> dict[str, Any]:
    cmd = [str(bin_dir / "tensorcast-load"), "--progress=false", f"--json={json_path}"]
    r = subprocess.run(cmd + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tensorcast-load exited {r.returncode}: {r.stderr}{r.stdout}")
    with open(json_path) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def wait_for_members(bin_dir: pathlib.Path, cluster: Cluster, n: int, json_path: str) -> None:
    """Until the tool sees all n nodes healthy (the probes take a moment)."""
    deadline = time.monotonic() + 30
    while True:
        doc = run_load(
            bin_dir,
            [f"--server={cluster.target}", "--scenario=info", "--requests=1", "--warmup=0"],
            json_path,
        )
        if len(doc["config"].get("nodes", [])) == n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {doc['config'].get('nodes')} of {n} nodes became healthy")
        time.sleep(0.5)


def tcp_gbps(bin_dir: pathlib.Path, nbytes: int) -> float:
    r = subprocess.run(
        [str(bin_dir / "tensorcast-bench-suite-client"), "tcp", f"--bytes={nbytes}"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = float(json.loads(r.stdout.strip().splitlines()[-1])["seconds"])
    return nbytes / seconds / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--nodes", default="1,2,3", help="cluster sizes, e.g. 1,2,3")
    ap.add_argument("--size", default="16MiB", help="the tensor each fetch streams")
    ap.add_argument("--workers-per-node", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured, per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tcp-bytes", default="256MiB", help="the TCP baseline's transfer")
    ap.add_argument("--json", help="write every run here")
    a = ap.parse_args()
    bin_dir = pathlib.Path(a.build) / "bin"
    sizes = [int(n) for n in a.nodes.split(",")]
    tcp_bytes = parse_size(a.tcp_bytes)
    for name in ("tensorcast-server", "tensorcast-load", "tensorcast-bench-suite-client"):
        if not (bin_dir / name).exists():
            print(f"cluster_bench: {bin_dir / name} is missing (make build)", file=sys.stderr)
            return 2

    tcp: list[float] = []
    agg: dict[int, list[float]] = {n: [] for n in sizes}
    # Each run's aggregate over the TCP figure timed just before it.
    vs_tcp: dict[int, list[float]] = {n: [] for n in sizes}
    per_node: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as work:
        json_path = os.path.join(work, "r.json")
        clusters: dict[int, Cluster] = {}
        try:
            for n in sizes:
                clusters[n] = Cluster(bin_dir, n, work)
                wait_for_members(bin_dir, clusters[n], n, json_path)
            for run in range(a.runs):
                tcp.append(tcp_gbps(bin_dir, tcp_bytes))
                for n in sizes:
                    w = a.workers_per_node
                    doc = run_load(
                        bin_dir,
                        [
                            f"--server={clusters[n].target}",
                            "--scenario=fetch",
                            "--format=raw",
                            f"--size={a.size}",
                            f"--concurrency={w * n}",
                            f"--connections={w}",
                            f"--duration={a.seconds}s",
                            f"--warmup={a.warmup}s",
                        ],
                        json_path,
                    )
                    if doc["config"].get("nodes") != [f"n{i}" for i in range(n)]:
                        raise RuntimeError(f"run on {doc['config'].get('nodes')}, not {n} nodes")
                    agg[n].append(doc["bytes_per_s"] / 1e9)
                    vs_tcp[n].append(agg[n][-1] / tcp[-1])
                    for node, f in doc["nodes"].items():
                        per_node[n].setdefault(node, []).append(f["bytes_per_s"] / 1e9)
                    runs.append(
                        {
                            "run": run,
                            "nodes": n,
                            "tcp_gbps": tcp[-1],
                            "gbps": doc["bytes_per_s"] / 1e9,
                            "by_node": {k: v["bytes_per_s"] / 1e9 for k, v in doc["nodes"].items()},
                            "p50_us": doc["latency_us"]["p50"],
                            "p99_us": doc["latency_us"]["p99"],
                            "client_cpu_cores": doc["client"]["cpu_cores"],
                        }
                    )
                    print(
                        f"run {run + 1}/{a.runs}: {n} node(s) {agg[n][-1]:.2f} GB/s "
                        f"(TCP {tcp[-1]:.2f})",
                        file=sys.stderr,
                    )
        finally:
            for c in clusters.values():
                c.stop()

    tcp_med = statistics.median(tcp)
    print(
        f"Fetch {a.size} RAW through tensorcast-load, {a.workers_per_node} workers per node, "
        f"{a.seconds:g} s per run, median of {a.runs} runs; {os.cpu_count()} CPUs"
    )
    print(
        f"TCP loopback (one connection, {a.tcp_bytes}): {tcp_med:.2f} GB/s "
        f"({min(tcp):.2f}-{max(tcp):.2f})"
    )
    first = f"vs {sizes[0]} node" if sizes else ""
    print(f"{'nodes':>5} {'aggregate GB/s':>22} {'vs TCP':>7} {first:>9}  per node GB/s")
    base = statistics.median(agg[sizes[0]]) if sizes else 0
    summary = []
    for n in sizes:
        med = statistics.median(agg[n])
        ratio = statistics.median(vs_tcp[n])
        nodes_text = " ".join(
            f"{k} {statistics.median(v):.2f}" for k, v in sorted(per_node[n].items())
        )
        print(
            f"{n:>5} {med:>8.2f} ({min(agg[n]):.2f}-{max(agg[n]):.2f})"
            f" {ratio:>6.2f}x {med / base if base else 0:>8.2f}x  {nodes_text}"
        )
        summary.append({"nodes": n, "gbps": med, "ratio_to_tcp": ratio})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                    "size": a.size,
                    "workers_per_node": a.workers_per_node,
                    "tcp_gbps_median": tcp_med,
                    "summary": summary,
                    "runs": runs,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

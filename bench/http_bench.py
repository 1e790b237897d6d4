#!/usr/bin/env python3
"""A 256 MiB download over the HTTP data plane with curl, beside a plain
TCP transfer of the same bytes over loopback and the gRPC Fetch of the same
tensor (the Python client, native extension where built), all in one run:

    .venv/bin/python bench/http_bench.py [--build build] [--mib 256] [--runs 3]

Prints the median seconds and GB/s of each and the ratios to the C TCP
baseline: the fastest of six plain C++ TCP transfers over loopback between
pre-faulted buffers (socket buffer sizes, write sizes;
`tensorcast-bench-suite-client tcp`), the best this host does. A Python
socket transfer (sendall of one buffer, recv_into a fresh buffer) is shown
beside it. curl writes to /dev/null. Figures in bench/README.md ("The HTTP
data plane").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
try:
    import tensorcast as tc
except ImportError:  # not installed: the source tree (no native extension)
    sys.path.insert(0, str(REPO / "client" / "python"))
    import tensorcast as tc


def tcp_seconds(payload: memoryview) -> float:
    n = len(payload)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def send() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(payload)

    sender = threading.Thread(target=send)
    sender.start()
    buf = bytearray(n)
    view = memoryview(buf)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        got = 0
        while got < n:
            k = s.recv_into(view[got:], n - got)
            if k == 0:
                raise RuntimeError("short TCP transfer")
            got += k
    seconds = time.perf_counter() - start
    sender.join()
    listener.close()
    return seconds


def c_tcp_seconds(build: str, nbytes: int) -> float:
    out = subprocess.run([f"{build}/bin/tensorcast-bench-suite-client", "tcp",
                          f"--bytes={nbytes}"], capture_output=True, text=True,
                         check=True, timeout=300)
    return float(json.loads(out.stdout)["seconds"])


def curl_seconds(url: str, nbytes: int) -> float:
    start = time.perf_counter()
    r = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}",
                        url], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    assert int(r.stdout) == nbytes, r.stdout
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print("http_bench: curl is not installed", file=sys.stderr)
        return 2
    n = args.mib << 20
    with tempfile.TemporaryDirectory() as tmp:
        port_file = pathlib.Path(tmp) / "port"
        http_file = pathlib.Path(tmp) / "http"
        server = subprocess.Popen(
            [f"{args.build}/bin/tensorcast-server", "--listen=127.0.0.1:0",
             f"--port-file={port_file}", "--http-listen=127.0.0.1:0",
             f"--http-port-file={http_file}", "--log-level=warn"])
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.02)
            target = f"127.0.0.1:{port_file.read_text().strip()}"
            base = f"http://127.0.0.1:{http_file.read_text().strip()}"
            a = np.random.default_rng(0).standard_normal(n // 4).astype(np.float32)
            client = tc.connect(target)
            t = tc.from_numpy(a)
            url = f"{base}/v1/tensors/{t.handle}?format=raw"
            with urllib.request.urlopen(url + "&dtype=float32") as r:
                assert r.read(64) == a.tobytes()[:64]
            head = urllib.request.Request(f"{base}/v1/tensors/{t.handle}", method="HEAD")
            with urllib.request.urlopen(head) as r:
                npy_bytes = int(r.headers["Content-Length"])
            payload = memoryview(a.tobytes())
            rows = {"TCP loopback (C, best of 6)": [], "TCP loopback (Python)": [],
                    "HTTP (curl, raw)": [],
                    "HTTP (curl, .npy)": [], "gRPC Fetch (Python client)": []}
            for _ in range(args.runs):  # interleaved, so drift hits all alike
                rows["TCP loopback (C, best of 6)"].append(c_tcp_seconds(args.build, n))
                rows["TCP loopback (Python)"].append(tcp_seconds(payload))
                rows["HTTP (curl, raw)"].append(curl_seconds(url, n))
                rows["HTTP (curl, .npy)"].append(
                    curl_seconds(f"{base}/v1/tensors/{t.handle}", npy_bytes))
                start = time.perf_counter()
                got = t.numpy()
                rows["gRPC Fetch (Python client)"].append(time.perf_counter() - start)
                assert got.nbytes == n
                del got
            client.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    tcp = statistics.median(rows["TCP loopback (C, best of 6)"])
    print(f"{args.mib} MiB float32, median of {args.runs} runs each, interleaved")
    print(f"{'path':30} {'seconds':>8} {'GB/s':>7} {'vs C TCP':>9}")
    for name, secs in rows.items():
        m = statistics.median(secs)
        print(f"{name:30} {m:8.3f} {n / m / 1e9:7.2f} {tcp / m:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The Python client's CUDA IPC against its host path, in the same run, on
a machine with a GPU and torch (prints "skipped" and exits 0 otherwise).

A tensorcast-server on this host (--shared-memory --devices=auto, started
here) holds a float32 tensor of --mib MiB in host memory (cpu); each turn
times, on one client each:

- fetch: ``t.torch(device="cuda")`` with ``cuda_ipc=True`` (the server
  writes into a device region the returned tensor views) against the host
  path, ``cuda_ipc=False`` (a fetch into a host array, then torch's copy to
  the GPU);
- put: ``from_torch(x_cuda, device="cpu")``, CUDA IPC (a device-to-device
  copy into a region, the server's download) against the host path
  (``x.cpu()``, then a put over the socket);
- and, as the ceiling for both, torch's own host-to-device and
  device-to-host copies of the same bytes from pageable memory.

Median GB/s of --runs, and the ratios CUDA IPC / host path and CUDA IPC /
torch's copy (higher is better).

    .venv/bin/python bench/python_cuda_ipc_bench.py [--server-bin build/bin/tensorcast-server]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(REPO / "tests" / "python"))


def median_gbps(nbytes: int, fn: Callable[[], Any], runs: int, sync: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        keep = fn()
        sync()
        times.append(time.perf_counter() - start)
        del keep
    return nbytes / statistics.median(times) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-bin", default=str(REPO / "build/bin/tensorcast-server"))
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("python_cuda_ipc_bench: skipped (no torch)")
        return 0
    if not torch.cuda.is_available():
        print("python_cuda_ipc_bench: skipped (no CUDA device)")
        return 0
    os.environ["TENSORCAST_SERVER_BIN"] = args.server_bin
    import tensorcast as tc

    from conftest import running_server

    nbytes = args.mib << 20
    values = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    x = torch.from_numpy(values).cuda()
    sync = torch.cuda.synchronize
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, running_server(
            pathlib.Path(tmp), "--shared-memory", "--devices=auto") as server:
        with tc.connect(server.target, default=False, cuda_ipc=True) as ipc, \
                tc.connect(server.target, default=False) as host:
            ipc.cuda_arena_bytes = 2 * nbytes + (1 << 20)
            t_ipc, t_host = ipc.from_numpy(values), host.from_numpy(values)
            # Warm up: the region lent, CUDA initialised, pages touched.
            ipc_x = t_ipc.torch(device="cuda")
            assert torch.equal(ipc_x, x), "CUDA IPC fetched other values"
            del ipc_x
            host.from_torch(x, device="cpu").delete()
            ipc.from_torch(x, device="cpu").delete()
            host_out = np.empty_like(values)
            rows["fetch cuda_ipc"] = median_gbps(
                nbytes, lambda: t_ipc.torch(device="cuda"), args.runs, sync)
            rows["fetch host path"] = median_gbps(
                nbytes, lambda: t_host.torch(device="cuda"), args.runs, sync)
            rows["torch H2D copy"] = median_gbps(
                nbytes, lambda: torch.from_numpy(values).cuda(), args.runs, sync)
            rows["put cuda_ipc"] = median_gbps(
                nbytes, lambda: ipc.from_torch(x, device="cpu").delete(), args.runs, sync)
            rows["put host path"] = median_gbps(
                nbytes, lambda: host.from_torch(x, device="cpu").delete(), args.runs, sync)
            rows["torch D2H copy"] = median_gbps(
                nbytes, lambda: np.copyto(host_out, x.cpu().numpy()), args.runs, sync)
            status = ipc.cuda_ipc_status
    print(f"python CUDA IPC, {args.mib} MiB float32, median of {args.runs} "
          f"({torch.cuda.get_device_name(0)}); cuda_ipc_status {status}")
    for name, gbps in rows.items():
        print(f"  {name:18s} {gbps:8.2f} GB/s")
    for op, ceiling in (("fetch", "torch H2D copy"), ("put", "torch D2H copy")):
        ipc_gbps = rows[f"{op} cuda_ipc"]
        print(f"  {op}: cuda_ipc / host path {ipc_gbps / rows[f'{op} host path']:.2f}x, "
              f"/ {ceiling} {ipc_gbps / rows[ceiling]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

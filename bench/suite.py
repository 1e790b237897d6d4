#!/usr/bin/env python3
"""The benchmark suite: tensorcast beside the alternatives a user would
otherwise pick, each scenario measured against all of them in one run on
this machine, printed as one table and written to
bench/results/<YYYY-MM-DD>.json.

Systems (every server runs as a child of this process on 127.0.0.1:0 and is
stopped with SIGTERM at the end, whatever happens):

- physical limits, both in C++ (tensorcast-bench-suite-client): a
  single-thread ``memcpy`` between two pre-faulted buffers, and a plain TCP
  transfer over loopback (1 MiB writes, read into a pre-faulted buffer);
- the naive peer a user writes today (bench/peers/naive_peer.py): grpcio
  answering ``tensor.detach().cpu().numpy().tobytes()`` (NumPy here when torch
  is absent), unary (one message) or streamed in 4 MiB slices; fetched by a
  Python grpcio client the naive way (``np.frombuffer`` of the unary reply,
  of ``b"".join`` of the stream);
- a plain C++ gRPC peer (bench/peers/plain_grpc_peer.cc): sync API, 4 MiB
  ``bytes`` messages, read by the C++ suite client into a pre-faulted buffer;
- tensorcast-server through the C++ client (RAW, the server's default 1 MiB
  chunks, into a pre-faulted buffer), the Python client (``t.numpy()``, its
  default 4 MiB chunks, a fresh array each time, as a user gets it) and
  tensorcast-load (RAW, bytes counted, not copied).

Scenarios: fetch 16 MiB and 256 MiB float32; fetch 256 MiB float32 cast to
float16 in the stream (the naive peer: ``astype(np.float16).tobytes()``);
latency of fetching a 16 B tensor, sequentially and with 8 and 64 concurrent
requests (closed loop over one channel; the C++ suite client's threads, or
tensorcast-load, for every server; the Python clients sequentially only).

Each cell is the median of a few runs, the systems taking turns run by run
so that a change in the machine's load hits them alike. Throughput is GB/s
(1e9 B/s) of the bytes delivered (for the cast: the float16 bytes), its
ratio against TCP in the same scenario; latency is p50 / p99 in µs, its
ratios against the plain C++ gRPC peer at the same concurrency. Figures,
not pass/fail.

    .venv/bin/python bench/suite.py [--build build] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, NoReturn, Optional

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "peers"))
import naive_peer  # noqa: E402

try:
    import tensorcast as tc
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(REPO / "client" / "python"))
    import tensorcast as tc

import grpc  # noqa: E402  (after tensorcast: same grpcio)
from google.protobuf import __version__ as protobuf_version  # noqa: E402

MiB = 1 << 20
PEER_MAX_MESSAGE = 1 << 30
TINY_ELEMENTS = 4  # the 16 B float32 tensor of the latency scenarios
NA_LOAD = "n/a (tensorcast-load not built)"


# ---------------------------------------------------------------------------
# Configuration.

@dataclasses.dataclass(frozen=True)
class Config:
    small: int  # bytes of the small and big fetches
    big: int
    runs_small: int
    runs_big: int
    runs_latency: int
    latency_seconds: float  # measured time of one latency run
    latency_warmup: float
    concurrency: tuple[int, ...]


FULL = Config(small=16 * MiB, big=256 * MiB, runs_small=5, runs_big=5, runs_latency=3,
              latency_seconds=1.0, latency_warmup=0.2, concurrency=(1, 8, 64))
QUICK = Config(small=1 * MiB, big=4 * MiB, runs_small=1, runs_big=1, runs_latency=1,
               latency_seconds=0.3, latency_warmup=0.1, concurrency=(1, 8, 64))


def size_name(nbytes: int) -> str:
    return f"{nbytes // MiB} MiB" if nbytes >= MiB else f"{nbytes} B"


def load_size(nbytes: int) -> str:
    return f"{nbytes // MiB}MiB" if nbytes >= MiB else f"{nbytes}B"


def tensor_values(elements: int) -> np.ndarray:
    """The float32 data every server holds: 0..2047 repeated (exact in
    float16, so a cast does not run into NumPy's slow overflow path)."""
    return np.resize(np.arange(2048, dtype=np.float32), elements)


# ---------------------------------------------------------------------------
# Child processes.

class Child:
    """A server process that writes its port to a file once it serves."""

    def __init__(self, name: str, argv: list[str], workdir: str) -> None:
        self.name = name
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*argv, f"--port-file={self.port_file}"],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.port = 0

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if os.path.exists(self.port_file):
                text = open(self.port_file).read().strip()
                if text:
                    self.port = int(text)
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during "
                                   f"start-up:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} wrote no port within {timeout} s")
            time.sleep(0.02)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return pathlib.Path(self.log_path).read_text(errors="replace")[-2000:]

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL after 15 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def run_json(argv: list[str], timeout: float = 300) -> dict[str, Any]:
    """Runs a measuring child; its last stdout line is JSON."""
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{pathlib.Path(argv[0]).name} exited {done.returncode}: "
                           f"{done.stderr.strip()[-500:]}")
    doc: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return doc


# ---------------------------------------------------------------------------
# Cells: one system in one scenario, a list of runs.

@dataclasses.dataclass
class Cell:
    scenario: str
    system: str
    label: str
    kind: str  # "throughput" or "latency"
    gbps: list[float] = dataclasses.field(default_factory=list)
    p50: list[float] = dataclasses.field(default_factory=list)
    p99: list[float] = dataclasses.field(default_factory=list)
    rps: list[float] = dataclasses.field(default_factory=list)
    na: Optional[str] = None  # why there is no figure
    error: Optional[str] = None

    def ok(self) -> bool:
        return self.na is None and self.error is None and bool(self.gbps or self.p50)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# A measurement: one run of one cell, filling it in.
Measure = Callable[[Cell], None]


def throughput(seconds_fn: Callable[[], float], nbytes: int) -> Measure:
    def measure(cell: Cell) -> None:
        cell.gbps.append(nbytes / seconds_fn() / 1e9)
    return measure


class Suite:
    def __init__(self, args: argparse.Namespace, cfg: Config, workdir: str) -> None:
        self.cfg = cfg
        self.bin = pathlib.Path(args.build).resolve() / "bin"
        self.client_bin = str(self.bin / "tensorcast-bench-suite-client")
        load = self.bin / "tensorcast-load"
        self.load_bin: Optional[str] = str(load) if os.access(load, os.X_OK) else None
        self.workdir = workdir
        self.children: list[Child] = []
        self.cells: list[Cell] = []

    # -- set-up -------------------------------------------------------------

    def start(self) -> None:
        for b in ("tensorcast-server", "tensorcast-bench-plain-peer",
                  "tensorcast-bench-suite-client"):
            if not os.access(self.bin / b, os.X_OK):
                raise RuntimeError(f"{self.bin / b} is missing: build the {b} target")
        cfg = self.cfg
        spec = ",".join(f"{n}:{e}" for n, e in (("small", cfg.small // 4),
                                                ("big", cfg.big // 4),
                                                ("tiny", TINY_ELEMENTS)))
        self.server = self._child("tensorcast-server", [
            str(self.bin / "tensorcast-server"), "--listen=127.0.0.1:0", "--log-level=warn"])
        self.plain = self._child("plain-peer", [
            str(self.bin / "tensorcast-bench-plain-peer"), "--listen=127.0.0.1:0",
            f"--tensors={spec}"])
        self.naive = self._child("naive-peer", [
            sys.executable, str(REPO / "bench" / "peers" / "naive_peer.py"),
            f"--tensors={spec}"])
        for c in self.children:
            c.wait_ready()

        self.tc = tc.connect(self.server.target)
        self.handles: dict[str, str] = {}
        self.tensors: dict[str, Any] = {}
        for name, nbytes in (("small", cfg.small), ("big", cfg.big),
                             ("tiny", TINY_ELEMENTS * 4)):
            t = self.tc.from_numpy(tensor_values(nbytes // 4))
            self.tensors[name] = t
            self.handles[name] = t.handle
        self.channel = grpc.insecure_channel(self.naive.target, options=[
            ("grpc.max_receive_message_length", PEER_MAX_MESSAGE),
            ("grpc.max_send_message_length", PEER_MAX_MESSAGE)])
        grpc.channel_ready_future(self.channel).result(timeout=30)
        method = f"/{naive_peer.SERVICE}/"
        req_ser = naive_peer.FetchRequest.SerializeToString
        resp_de = naive_peer.Chunk.FromString
        self.naive_unary = self.channel.unary_unary(
            method + "FetchUnary", request_serializer=req_ser, response_deserializer=resp_de)
        self.naive_stream = self.channel.unary_stream(
            method + "Fetch", request_serializer=req_ser, response_deserializer=resp_de)

    def _child(self, name: str, argv: list[str]) -> Child:
        c = Child(name, argv, self.workdir)
        self.children.append(c)
        return c

    def stop(self) -> dict[str, Optional[int]]:
        """Frees what it made and stops every child; their exit statuses."""
        try:
            if hasattr(self, "channel"):
                self.channel.close()
            if hasattr(self, "tc"):
                for t in getattr(self, "tensors", {}).values():
                    t.delete()
                self.tc.close()
        except Exception as e:  # the children are stopped all the same
            print(f"(clean-up: {e})", file=sys.stderr)
        return {c.name: c.stop() for c in self.children}

    # -- measurements -------------------------------------------------------

    def cpp(self, mode: str, **flags: Any) -> dict[str, Any]:
        argv = [self.client_bin, mode]
        for k, v in flags.items():
            argv.append(f"--{k}" if v is True else f"--{k}={v}")
        return run_json(argv)

    def cpp_seconds(self, mode: str, **flags: Any) -> Callable[[], float]:
        return lambda: float(self.cpp(mode, **flags)["seconds"])

    def naive_fetch(self, name: str, dtype: str, nbytes: int, unary: bool) -> Callable[[], float]:
        np_dtype = np.float16 if dtype == "float16" else np.float32
        req = naive_peer.FetchRequest(name=name, dtype=dtype)

        def once() -> float:
            t0 = time.perf_counter()
            if unary:
                a = np.frombuffer(self.naive_unary(req).data, np_dtype)
            else:
                a = np.frombuffer(b"".join(c.data for c in self.naive_stream(req)), np_dtype)
            sec = time.perf_counter() - t0
            if a.nbytes != nbytes:
                raise RuntimeError(f"naive peer sent {a.nbytes} of {nbytes} bytes")
            return sec

        once()  # warm-up
        return once

    def tc_python_fetch(self, name: str, dtype: str, nbytes: int) -> Callable[[], float]:
        t = self.tensors[name]

        def once() -> float:
            t0 = time.perf_counter()
            a = t.half().numpy() if dtype == "float16" else t.numpy()
            sec = time.perf_counter() - t0
            if a.nbytes != nbytes:
                raise RuntimeError(f"tensorcast sent {a.nbytes} of {nbytes} bytes")
            return sec

        once()
        return once

    def load(self, **flags: Any) -> dict[str, Any]:
        assert self.load_bin is not None
        out = os.path.join(self.workdir, "load.json")
        argv = [self.load_bin, f"--server={self.server.target}", "--format=raw",
                "--progress=false", f"--json={out}"]
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"tensorcast-load exited {done.returncode}: "
                               f"{done.stderr.strip()[-500:]}")
        with open(out) as f:
            doc: dict[str, Any] = json.load(f)
        if doc.get("errors"):
            raise RuntimeError(f"tensorcast-load errors: {doc['errors']}")
        return doc

    def load_fetch(self, nbytes: int, dtype: str, runs: int) -> Measure:
        big = nbytes >= 64 * MiB
        flags: dict[str, Any] = {"scenario": "fetch", "size": load_size(nbytes),
                                 "concurrency": 1, "warmup": "300ms"}
        if big:
            flags["requests"] = 3
        else:
            flags["duration"] = "500ms" if runs > 1 else "200ms"
        if dtype == "float16":
            flags["to_dtype"] = "float16"

        def measure(cell: Cell) -> None:
            doc = self.load(**flags)
            cell.gbps.append(float(doc["bytes_per_s"]) / 1e9)
        return measure

    # -- scenarios ----------------------------------------------------------

    def run_cells(self, plan: list[tuple[Cell, Optional[Callable[[], Measure]]]],
                  runs: int) -> None:
        """Runs every cell `runs` times, taking turns; a cell that fails
        keeps its error and is skipped after."""
        measures: dict[int, Measure] = {}
        for cell, make in plan:
            self.cells.append(cell)
            if make is None or cell.na:
                continue
            try:
                measures[id(cell)] = make()
            except Exception as e:
                cell.error = str(e)
        for _ in range(runs):
            for cell, _make in plan:
                m = measures.get(id(cell))
                if m is None or cell.error:
                    continue
                try:
                    m(cell)
                except Exception as e:
                    cell.error = str(e)
            print(".", end="", flush=True, file=sys.stderr)

    def fetch_scenario(self, name: str, nbytes: int, dtype: str, runs: int) -> None:
        out_bytes = nbytes // 2 if dtype == "float16" else nbytes
        title = f"fetch {size_name(nbytes)} float32" + (" -> float16" if dtype == "float16" else "")

        def cell(system: str, label: str) -> Cell:
            return Cell(title, system, label, "throughput")

        fetch: dict[str, Any] = {"bytes": out_bytes}
        if dtype:
            fetch["dtype"] = dtype
        plain = cell("plain_grpc", "plain C++ gRPC peer, 4 MiB stream (C++ client)")
        if dtype == "float16":
            plain.na = "n/a (no cast)"
        load = cell("tensorcast_load", "tensorcast via tensorcast-load (c=1)")
        if self.load_bin is None:
            load.na = NA_LOAD
        plan: list[tuple[Cell, Optional[Callable[[], Measure]]]] = [
            (cell("memcpy", "memcpy, 1 thread (C++)"),
             lambda: throughput(self.cpp_seconds("memcpy", bytes=out_bytes), out_bytes)),
            (cell("tcp", "TCP over loopback (C++)"),
             lambda: throughput(self.cpp_seconds("tcp", bytes=out_bytes), out_bytes)),
            (plain, lambda: throughput(self.cpp_seconds(
                "fetch", target="peer", server=self.plain.target, name=name, **fetch),
                out_bytes)),
            (cell("naive_unary", "naive grpcio peer, unary (Python client)"),
             lambda: throughput(self.naive_fetch(name, dtype, out_bytes, True), out_bytes)),
            (cell("naive_stream", "naive grpcio peer, 4 MiB stream (Python client)"),
             lambda: throughput(self.naive_fetch(name, dtype, out_bytes, False), out_bytes)),
            (cell("tensorcast_cpp", "tensorcast, C++ client (1 MiB chunks)"),
             lambda: throughput(self.cpp_seconds(
                 "fetch", target="tensorcast", server=self.server.target,
                 name=self.handles[name], **fetch), out_bytes)),
            (cell("tensorcast_python", "tensorcast, Python client"),
             lambda: throughput(self.tc_python_fetch(name, dtype, out_bytes), out_bytes)),
            (load, lambda: self.load_fetch(nbytes, dtype, runs)),
        ]
        self.run_cells(plan, runs)

    def latency_scenario(self, concurrency: int) -> None:
        cfg = self.cfg
        title = ("fetch 16 B, sequential" if concurrency == 1
                 else f"fetch 16 B, concurrency {concurrency}")

        def cell(system: str, label: str) -> Cell:
            return Cell(title, system, label, "latency")

        def cpp_latency(target: str, server: str, ref: str, unary: bool = False) -> Measure:
            flags: dict[str, Any] = dict(target=target, server=server, name=ref,
                                         concurrency=concurrency,
                                         duration=cfg.latency_seconds,
                                         warmup=cfg.latency_warmup)
            if unary:
                flags["unary"] = True

            def measure(c: Cell) -> None:
                r = self.cpp("latency", **flags)
                if r["errors"]:
                    raise RuntimeError(f"{r['errors']} failed requests")
                c.p50.append(r["p50_us"])
                c.p99.append(r["p99_us"])
                c.rps.append(r["requests_per_s"])
            return measure

        def load_latency() -> Measure:
            def measure(c: Cell) -> None:
                doc = self.load(scenario="fetch", size="16B", concurrency=concurrency,
                                duration=f"{int(cfg.latency_seconds * 1000)}ms",
                                warmup=f"{int(cfg.latency_warmup * 1000)}ms")
                c.p50.append(float(doc["latency_us"]["p50"]))
                c.p99.append(float(doc["latency_us"]["p99"]))
                c.rps.append(float(doc["requests_per_s"]))
            return measure

        def py_latency(call: Callable[[], object]) -> Measure:
            call()

            def measure(c: Cell) -> None:
                for _ in range(20):
                    call()
                times: list[float] = []
                end = time.perf_counter() + cfg.latency_seconds
                while True:
                    t0 = time.perf_counter()
                    if t0 >= end:
                        break
                    call()
                    times.append((time.perf_counter() - t0) * 1e6)
                times.sort()
                c.p50.append(times[len(times) // 2])
                c.p99.append(times[min(len(times) - 1, int(len(times) * 0.99))])
                c.rps.append(len(times) / cfg.latency_seconds)
            return measure

        tiny = self.tensors["tiny"]
        tiny_req = naive_peer.FetchRequest(name="tiny")
        load = cell("tensorcast_load", "tensorcast via tensorcast-load")
        if self.load_bin is None:
            load.na = NA_LOAD
        plan: list[tuple[Cell, Optional[Callable[[], Measure]]]] = [
            (cell("plain_grpc", "plain C++ gRPC peer, stream (C++ client)"),
             lambda: cpp_latency("peer", self.plain.target, "tiny")),
            (cell("naive_unary", "naive grpcio peer, unary (C++ client)"),
             lambda: cpp_latency("peer", self.naive.target, "tiny", unary=True)),
            (cell("naive_stream", "naive grpcio peer, stream (C++ client)"),
             lambda: cpp_latency("peer", self.naive.target, "tiny")),
            (cell("tensorcast_cpp", "tensorcast, C++ client"),
             lambda: cpp_latency("tensorcast", self.server.target, self.handles["tiny"])),
            (load, load_latency),
        ]
        if concurrency == 1:
            plan += [
                (cell("naive_unary_python", "naive grpcio peer, unary (Python client)"),
                 lambda: py_latency(lambda: self.naive_unary(tiny_req))),
                (cell("tensorcast_python", "tensorcast, Python client"),
                 lambda: py_latency(tiny.numpy)),
            ]
        self.run_cells(plan, cfg.runs_latency)

    def run(self) -> None:
        cfg = self.cfg
        self.fetch_scenario("small", cfg.small, "", cfg.runs_small)
        self.fetch_scenario("big", cfg.big, "", cfg.runs_big)
        self.fetch_scenario("big", cfg.big, "float16", cfg.runs_big)
        for c in cfg.concurrency:
            self.latency_scenario(c)
        print(file=sys.stderr)


# ---------------------------------------------------------------------------
# Report.

def baseline(cells: list[Cell], cell: Cell) -> Optional[Cell]:
    want = "tcp" if cell.kind == "throughput" else "plain_grpc"
    for c in cells:
        if c.scenario == cell.scenario and c.system == want and c.ok():
            return c
    return None


def figure_text(cell: Cell) -> tuple[str, str]:
    """(figure, ratio) as printed."""
    if cell.na:
        return cell.na, ""
    if cell.error:
        return "FAILED: " + cell.error.splitlines()[0][:60], ""
    return "", ""


def table(cells: list[Cell]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    for cell in cells:
        fig, ratio = figure_text(cell)
        base = baseline(cells, cell)
        if cell.ok():
            n = len(cell.gbps or cell.p50)
            if cell.kind == "throughput":
                fig = f"{med(cell.gbps):7.2f} GB/s"
                if base is not None:
                    ratio = f"{med(cell.gbps) / med(base.gbps):.2f}x TCP"
            else:
                fig = (f"{med(cell.p50):7.0f} / {med(cell.p99):<7.0f} µs "
                       f"{med(cell.rps):>8.0f} req/s")
                if base is not None:
                    ratio = (f"{med(cell.p50) / med(base.p50):.2f}x / "
                             f"{med(cell.p99) / med(base.p99):.2f}x plain")
            runs = str(n)
        else:
            runs = ""
        rows.append((cell.scenario, cell.label, fig, runs, ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    head = ("scenario", "system", "figure (latency: p50 / p99)", "runs", "vs baseline")
    widths = [max(w, len(h)) for w, h in zip(widths, head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    last = ""
    for r in rows:
        scen = r[0] if r[0] != last else ""
        if r[0] != last and last:
            lines.append("")
        last = r[0]
        lines.append("  ".join(x.ljust(w) for x, w in zip((scen, *r[1:]), widths)).rstrip())
    return "\n".join(lines)


def results_json(cells: list[Cell]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cell in cells:
        base = baseline(cells, cell)
        entry: dict[str, Any] = {"scenario": cell.scenario, "system": cell.system,
                                 "label": cell.label}
        if not cell.ok():
            entry["na" if cell.na else "error"] = cell.na or cell.error or "no runs"
            out.append(entry)
            continue
        figures: list[dict[str, Any]] = []
        if cell.kind == "throughput":
            f: dict[str, Any] = {"name": "throughput", "unit": "GB/s",
                                 "median": med(cell.gbps), "runs": cell.gbps}
            if base is not None:
                f["ratio"] = med(cell.gbps) / med(base.gbps)
                f["ratio_to"] = "tcp"
            figures.append(f)
        else:
            for name, vals in (("latency_p50", cell.p50), ("latency_p99", cell.p99)):
                f = {"name": name, "unit": "us", "median": med(vals), "runs": vals}
                if base is not None:
                    bvals = base.p50 if name == "latency_p50" else base.p99
                    f["ratio"] = med(vals) / med(bvals)
                    f["ratio_to"] = "plain_grpc"
                figures.append(f)
            figures.append({"name": "requests_per_s", "unit": "1/s",
                            "median": med(cell.rps), "runs": cell.rps})
        entry["figures"] = figures
        out.append(entry)
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
            "cpu_model": model, "kernel": platform.release(), "os": platform.platform(),
            "memory_bytes": mem, "loadavg_start": list(os.getloadavg())}


def command_out(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return ""


def versions(suite: Suite) -> dict[str, Any]:
    try:
        cpp = suite.cpp("versions")
    except Exception:
        cpp = {}
    try:
        import torch  # type: ignore[import-not-found]
        torch_version: Optional[str] = str(torch.__version__)
    except ImportError:
        torch_version = None
    return {
        "tensorcast": tc.__version__,
        "git": command_out(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
        "python": platform.python_version(), "numpy": np.__version__,
        "grpcio": grpc.__version__,
        "protobuf_python": protobuf_version,
        "grpc_cpp": cpp.get("grpc"), "protobuf_cpp": cpp.get("protobuf"),
        "cxx": command_out(["c++", "--version"]), "torch": torch_version,
        "tensorcast_load": suite.load_bin is not None,
    }


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description="tensorcast benchmark suite")
    parser.add_argument("--build", default="build", help="the CMake build directory")
    parser.add_argument("--quick", action="store_true",
                        help="one run each, small sizes (a check that it all works)")
    parser.add_argument("--out", help="results JSON (default: bench/results/DATE.json; "
                                      "--quick writes none unless given)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    out_path: Optional[pathlib.Path] = None
    if args.out:
        out_path = pathlib.Path(args.out)
    elif not args.quick:
        out_path = REPO / "bench" / "results" / f"{datetime.date.today().isoformat()}.json"

    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    info = machine()
    exits: dict[str, Optional[int]] = {}
    with tempfile.TemporaryDirectory(prefix="tensorcast-suite-") as workdir:
        suite = Suite(args, cfg, workdir)
        try:
            suite.start()
            vers = versions(suite)
            suite.run()
        finally:
            exits = suite.stop()
    elapsed = time.monotonic() - started
    info["loadavg_end"] = list(os.getloadavg())

    print(f"tensorcast benchmark suite ({'quick' if args.quick else 'full'}), "
          f"{datetime.date.today().isoformat()}: {info['cpu_model']}, {info['nproc']} CPUs, "
          f"Linux {info['kernel']}; tensorcast {vers['tensorcast']} ({vers['git']}), "
          f"gRPC C++ {vers['grpc_cpp']}, grpcio {vers['grpcio']}, numpy {vers['numpy']}"
          f"{'' if vers['torch'] else ', no torch (naive peer holds NumPy)'}")
    print("medians of the runs; GB/s = 1e9 B/s delivered; latency in µs, closed loop "
          "over one channel\n")
    print(table(suite.cells))
    print("\nmemcpy and TCP: C++, pre-faulted buffers. C++ clients read into a pre-faulted "
          "buffer; Python clients return a fresh array;\ntensorcast-load counts bytes "
          "without copying. tensorcast C++ client: RAW, server default 1 MiB chunks; "
          "Python client: 4 MiB.")
    print(f"\n({elapsed:.0f} s; children exited {exits})")

    failed = [c for c in suite.cells if c.error]
    if out_path is not None:
        doc = {
            "suite": "bench/suite.py", "date": datetime.date.today().isoformat(),
            "command": " ".join([".venv/bin/python", "bench/suite.py", *sys.argv[1:]]),
            "mode": "quick" if args.quick else "full", "elapsed_s": round(elapsed, 1),
            "machine": info, "versions": vers, "config": dataclasses.asdict(cfg),
            "notes": {
                "throughput": "GB/s = 1e9 bytes/s of the bytes delivered (float16 "
                              "output for the cast); ratio against TCP in the same scenario",
                "latency": "closed loop over one channel, per-request time from send "
                           "to last byte; ratio against the plain C++ gRPC peer",
                "memcpy": "C++ std::memcpy, one thread, pre-faulted buffers",
                "tcp": "C++, one loopback connection, 1 MiB writes, pre-faulted "
                       "receive buffer",
            },
            "children_exit": exits, "results": results_json(suite.cells),
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"results: {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures: the real tensorcast-server on a free port, and a client.

The server binary is $TENSORCAST_SERVER_BIN, else tensorcast-server in
$TENSORCAST_BIN_DIR, else build/bin/tensorcast-server (`make build` makes it).
With $TENSORCAST_TEST_SERVER=HOST:PORT the session's server is that running
one (tests/gpu/run.sh starts it with --devices=auto); tests that need a server
with their own flags still start one from the binary. Tests import the
*installed* package (`make test-python` runs `pip install ./client/python`
first); when it is not installed, the source tree is used so that a bare
`pytest tests/python` still works during development.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

try:
    import tensorcast  # noqa: F401
except ImportError:  # pragma: no cover - development fallback
    sys.path.insert(0, str(REPO / "client" / "python"))

import tensorcast as tc  # noqa: E402


def server_binary() -> pathlib.Path:
    default = REPO / "build" / "bin" / "tensorcast-server"
    if os.environ.get("TENSORCAST_BIN_DIR"):
        default = pathlib.Path(os.environ["TENSORCAST_BIN_DIR"]) / "tensorcast-server"
    path = pathlib.Path(os.environ.get("TENSORCAST_SERVER_BIN", default))
    if not path.exists():
        pytest.exit(f"{path} not found: run `make build` (or set TENSORCAST_SERVER_BIN)",
                    returncode=2)
    return path


class Server:
    """A tensorcast-server process on 127.0.0.1 and a free port."""

    def __init__(self, tmp: pathlib.Path, *flags: str) -> None:
        port_file = tmp / "port"
        self.log_path = tmp / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(server_binary()), "--listen=127.0.0.1:0", f"--port-file={port_file}",
             "--shutdown-grace=2", *flags],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tensorcast-server exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tensorcast-server did not write its port file in 30 s")
            time.sleep(0.02)
        self.port = int(port_file.read_text().strip())
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running_server(tmp: pathlib.Path, *flags: str) -> Iterator[Server]:
    server = Server(tmp, *flags)
    try:
        yield server
    finally:
        server.stop()


class ExternalServer:
    """A server this session did not start ($TENSORCAST_TEST_SERVER)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = int(target.rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server | ExternalServer]:
    external = os.environ.get("TENSORCAST_TEST_SERVER")
    if external:
        yield ExternalServer(external)
        return
    # Shared memory allowed: only the "shm" client path opts in.
    with running_server(tmp_path_factory.mktemp("server"), "--shared-memory") as s:
        yield s


def native_built() -> bool:
    try:
        from tensorcast import _native  # noqa: F401
    except ImportError:
        return False
    return True


# Every test that uses the client runs on each data path: grpcio, the
# native extension (tensorcast._native) where it was built, and shared
# memory (grpcio for the stream, transfers of 1 MiB or more through a
# sealed memfd the server maps, or a /dev/shm file).
@pytest.fixture(scope="session", params=["grpcio", "native", "shm"])
def client(server: Server, request: pytest.FixtureRequest) -> Iterator[tc.Client]:
    """The default client, connected to the session's server, on one path."""
    native = request.param == "native"
    if native and not native_built():
        pytest.skip("tensorcast._native was not built (no gRPC C++ "
                    "library when the package was installed)")
    shared_memory = "auto" if request.param == "shm" else False
    saved = os.environ.get("TENSORCAST_NATIVE")
    os.environ["TENSORCAST_NATIVE"] = "1" if native else "0"  # clients tests make
    try:
        with tc.connect(server.target, timeout=30, native=native,
                        shared_memory=shared_memory) as c:
            yield c
    finally:
        if saved is None:
            os.environ.pop("TENSORCAST_NATIVE", None)
        else:
            os.environ["TENSORCAST_NATIVE"] = saved


@pytest.fixture(scope="session")
def cuda(client: tc.Client) -> bool:
    """Whether the server has a GPU."""
    return bool(client.server_info()["cuda_available"])


@pytest.fixture()
def baseline(client: tc.Client) -> int:
    """allocated_bytes on the cpu pool with every dropped proxy deleted, once
    it is steady (an earlier Fetch's last chunks may still be in flight)."""
    gc.collect()
    client._flush()
    previous = None
    for _ in range(40):
        now = client.stats()["cpu"]["allocated_bytes"]
        if now == previous:
            break
        previous = now
        time.sleep(0.025)
    return now

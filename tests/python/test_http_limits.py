"""The limits docs/http.md states for the HTTP data plane, on the real
server: what a slow reader holds, idle and stalled connections dropped, the
worker pool (64 connections at once, more wait), a token revoked by SIGHUP
cutting its transfers, the drain on SIGTERM (503 for new requests, running
downloads finish; cut once the grace period is over), and every error
status through curl as through urllib.

Timings are checked against the documented figures with wide margins (the
machine may be loaded): only the order of magnitude and the order of
events matter.
"""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest
from test_http import Http, curl, error, npy

ALICE_TOKEN = "alice-token-0123456789"
ROOT_TOKEN = "root-token-0123456789ab"
ALICE = {"Authorization": f"Bearer {ALICE_TOKEN}"}
ROOT = {"Authorization": f"Bearer {ROOT_TOKEN}"}
TOKENS = f"{ALICE_TOKEN} alice\n{ROOT_TOKEN} root admin\n"
MiB = 1 << 20


def open_request(port: int, request: bytes, rcvbuf: int = 64 * 1024) -> socket.socket:
    """A connection with `request` sent, its receive buffer kept small so
    that a client that reads nothing soon holds the server's writes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    if request:
        s.sendall(request)
    return s


def get_request(path: str, token: str | None = None, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n".encode()


def read_head(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The response's status and headers (names lower-case), and the body
    bytes read with them."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = s.recv(4096)
        assert got, f"the connection closed before the headers: {buf!r}"
        buf += got
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, rest


def read_to_end(s: socket.socket, limit: int | None = None) -> bytes:
    """What comes until the server closes (or `limit` bytes)."""
    out = bytearray()
    try:
        while limit is None or len(out) < limit:
            got = s.recv(1 << 16)
            if not got:
                break
            out += got
    except ConnectionResetError:
        pass
    return bytes(out)


def seconds_to_close(s: socket.socket, start: float, out: dict[str, float], key: str) -> None:
    s.settimeout(120)
    read_to_end(s)
    out[key] = time.monotonic() - start


def wait_for(what: str, cond: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def tenant(h: Http, headers: dict[str, str]) -> dict[str, int]:
    status, _, body = h.request("GET", "/v1/stats", headers=headers)
    assert status == 200, body
    t = json.loads(body)["tenant"]
    return {k: t.get(k, 0) for k in ("bytes", "active_streams")}


def cpu_allocated(h: Http) -> int:
    status, _, body = h.request("GET", "/v1/stats", headers=ROOT)
    assert status == 200, body
    cpu = [d for d in json.loads(body)["devices"] if d["device"] == "cpu"][0]
    return int(cpu.get("allocated_bytes", 0))


def rss(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_slow_reader_holds_one_chunk_and_stalled_connections_are_dropped(
        tmp_path: pathlib.Path) -> None:
    """docs/http.md, Memory and Slow clients: a download that is not read
    holds one --chunk-bytes buffer (charged to the tenant; no pool memory),
    and is dropped once its writes have waited 10 s; a connection that
    sends nothing is closed after 5 s, one that stops mid-request after
    10 s."""
    chunk = 64 * 1024
    (tmp_path / "tokens").write_text(TOKENS)
    h = Http(tmp_path, f"--auth-tokens={tmp_path / 'tokens'}", f"--chunk-bytes={chunk}")
    try:
        a = np.ones(8 * MiB, np.float32)  # 32 MiB; 64 MiB as float64
        status, info = h.put(a, "?name=big", headers=ALICE)
        assert status == 201, info
        assert tenant(h, ALICE) == {"bytes": a.nbytes, "active_streams": 0}
        pool_before = cpu_allocated(h)
        rss_before = rss(h.server.proc.pid)

        start = time.monotonic()
        idle = open_request(h.port, b"")
        stalled = open_request(h.port, b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n")
        closed: dict[str, float] = {}
        watchers = [threading.Thread(target=seconds_to_close, args=(s, start, closed, k))
                    for s, k in ((idle, "idle"), (stalled, "stalled"))]
        for w in watchers:
            w.start()
        # The cast makes the server produce each chunk into a buffer of its
        # own (a plain download is sent from the tensor's storage).
        dl = open_request(h.port, get_request("/v1/tensors/big?dtype=float64", ALICE_TOKEN))
        status, headers, _ = read_head(dl)
        assert status == 200
        total = int(headers["content-length"])
        assert total > 64 * MiB
        # The client reads nothing: the socket buffers fill (a few MiB at
        # most) and the server's write waits; all the while the stream holds
        # one chunk buffer, charged to alice, and nothing from the pool.
        wait_for("the first chunk produced",
                 lambda: tenant(h, ALICE)["bytes"] > a.nbytes, timeout=10)
        for _ in range(8):
            t = tenant(h, ALICE)
            assert t["active_streams"] == 1, t
            assert t["bytes"] - a.nbytes == chunk, t
            time.sleep(0.25)
        assert cpu_allocated(h) == pool_before
        grown = rss(h.server.proc.pid) - rss_before
        assert grown < 16 * MiB, f"the server grew {grown} bytes for a stalled download"

        # Its write gives up 10 s after the last byte went out: the stream,
        # its charge and its slot go.
        wait_for("the stalled download dropped",
                 lambda: tenant(h, ALICE)["active_streams"] == 0, timeout=90)
        dropped = time.monotonic() - start
        assert dropped >= 9.5, dropped
        assert tenant(h, ALICE)["bytes"] == a.nbytes
        dl.settimeout(30)
        got = read_to_end(dl)
        assert len(got) < total, "a dropped download must end short"
        dl.close()

        for w in watchers:
            w.join(timeout=120)
        idle.close()
        stalled.close()
        # Sending nothing: the keep-alive wait (5 s); stopping mid-request:
        # the read timeout (10 s).
        assert 4.5 <= closed["idle"] < closed["stalled"], closed
        assert 9.5 <= closed["stalled"] < 90, closed
        assert closed["stalled"] - closed["idle"] >= 2.5, closed
        log = h.server.log_path.read_text()
        assert "client went away mid-download" in log, log[-2000:]
    finally:
        h.close()


def test_64_connections_at_once_more_wait(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Slow clients: 64 connections are served at once, each
    holding a worker; the 65th is accepted and waits for a free worker."""
    h = Http(tmp_path)
    holders: list[socket.socket] = []
    try:
        # A request whose headers never end holds its worker (for up to the
        # 10 s read timeout: this test takes a few seconds).
        hold = b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n"
        for _ in range(63):
            holders.append(open_request(h.port, hold))
        start = time.monotonic()
        # The 64th is served at once (urllib sends Connection: close, so its
        # worker is free again after).
        status, _, _ = h.request("GET", "/v1/stats")
        assert status == 200
        holders.append(open_request(h.port, hold))
        time.sleep(0.3)
        waiting = open_request(h.port, get_request("/v1/stats", extra="Connection: close\r\n"))
        waiting.settimeout(2)
        with pytest.raises(socket.timeout):
            waiting.recv(1)
        assert time.monotonic() - start < 8, "too slow for the holders' 10 s"
        # A worker frees up: the waiting connection is served.
        holders.pop(0).close()
        waiting.settimeout(30)
        status, _, _ = read_head(waiting)
        assert status == 200
        waiting.close()
    finally:
        for s in holders:
            s.close()
        h.close()


def test_sighup_revocation_cuts_http_transfers(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Tokens: a token removed by SIGHUP cuts its running
    download short and fails its running upload (401, nothing stored); new
    requests with it are 401."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    h = Http(tmp_path, f"--auth-tokens={tokens}", "--chunk-bytes=64KiB")
    try:
        a = np.arange(4 * MiB, dtype=np.float32)  # 16 MiB
        status, info = h.put(a, "?name=w", headers=ALICE)
        assert status == 201, info
        dl = open_request(h.port, get_request("/v1/tensors/w", ALICE_TOKEN))
        status, headers, first = read_head(dl)
        assert status == 200
        total = int(headers["content-length"])
        first += read_to_end(dl, limit=MiB)
        body = npy(np.ones(MiB, np.float32))
        up = open_request(h.port, (
            "PUT /v1/tensors?name=up HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {ALICE_TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:len(body) // 2])
        wait_for("both transfers running",
                 lambda: json.loads(h.request("GET", "/v1/stats", headers=ROOT)[2])
                 .get("active_streams", 0) == 2)

        tokens.write_text(f"{ROOT_TOKEN} root admin\n")
        h.server.proc.send_signal(signal.SIGHUP)
        wait_for("alice's token refused",
                 lambda: h.request("GET", "/v1/tensors", headers=ALICE)[0] == 401)
        status, resp_headers, out = h.request("GET", "/v1/tensors/w", headers=ALICE)
        assert status == 401 and error(out)["code"] == "UNAUTHENTICATED"

        # The upload's next piece of body meets the revocation: 401. (The
        # server may have met it already in what was sent before, answered
        # and closed.)
        try:
            up.sendall(body[len(body) // 2:len(body) // 2 + 4096])
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, rest = read_head(up)
        rest += read_to_end(up)
        up.close()
        assert status == 401, rest
        e = error(rest)
        assert e["code"] == "UNAUTHENTICATED" and "revoked" in e["message"], e
        # The download ends short once the client reads on.
        got = first + read_to_end(dl)
        dl.close()
        assert len(got) < total
        assert got == npy(a)[:len(got)]
        wait_for("no streams left",
                 lambda: json.loads(h.request("GET", "/v1/stats", headers=ROOT)[2])
                 .get("active_streams", 0) == 0)
        log = h.server.log_path.read_text()
        assert "the download was cut short" in log, log[-2000:]

        # The token back: the upload stored nothing.
        tokens.write_text(TOKENS)
        h.server.proc.send_signal(signal.SIGHUP)
        wait_for("alice's token back",
                 lambda: h.request("GET", "/v1/tensors", headers=ALICE)[0] == 200)
        assert h.request("GET", "/v1/tensors/up/info", headers=ALICE)[0] == 404
        assert h.request("GET", "/v1/tensors/w/info", headers=ALICE)[0] == 200
    finally:
        h.close()


def test_drain_answers_503_and_lets_downloads_finish(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Shutdown: after SIGTERM new requests get 503 while a
    running download goes on to its last byte; the server exits once it has
    (long before --shutdown-grace is over)."""
    h = Http(tmp_path, "--chunk-bytes=64KiB", "--shutdown-grace=120")
    try:
        a = np.arange(4 * MiB, dtype=np.float32)
        status, info = h.put(a, "?name=w")
        assert status == 201, info
        whole = npy(a)
        dl = open_request(h.port, get_request("/v1/tensors/w"))
        status, headers, got = read_head(dl)
        assert status == 200 and int(headers["content-length"]) == len(whole)
        got += read_to_end(dl, limit=MiB)

        h.server.proc.send_signal(signal.SIGTERM)
        wait_for("503 for new requests",
                 lambda: h.request("GET", "/v1/stats")[0] == 503)
        status, _, body = h.request("GET", "/v1/tensors/w")
        assert status == 503 and error(body)["code"] == "UNAVAILABLE", body
        r = curl("-o", str(tmp_path / "body"), "-w", "%{http_code}", f"{h.base}/v1/tensors/w")
        assert r.stdout == "503", r.stderr
        assert error((tmp_path / "body").read_bytes())["code"] == "UNAVAILABLE"
        time.sleep(1)
        assert h.server.proc.poll() is None, "exited with a download running"

        # The download goes on to the end, then the server exits.
        got += read_to_end(dl, limit=len(whole) - len(got))
        assert got == whole
        dl.close()
        finished = time.monotonic()
        h.server.proc.wait(timeout=60)
        assert time.monotonic() - finished < 30
        assert h.server.proc.returncode == 0
    finally:
        h.close()


def test_drain_cuts_downloads_after_the_grace_period(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Shutdown: a download still running when
    --shutdown-grace is over is cut short (like a gRPC call), so a slow
    client cannot hold the server up."""
    h = Http(tmp_path, "--chunk-bytes=64KiB", "--shutdown-grace=1")
    try:
        a = np.arange(4 * MiB, dtype=np.float32)
        assert h.put(a, "?name=w")[0] == 201
        whole = npy(a)
        dl = open_request(h.port, get_request("/v1/tensors/w"))
        status, headers, got = read_head(dl)
        assert status == 200
        got += read_to_end(dl, limit=MiB)
        start = time.monotonic()
        h.server.proc.send_signal(signal.SIGTERM)
        # The client keeps reading, slowly (each read well inside the 10 s
        # write timeout), past the grace period.
        dl.settimeout(30)
        cut = 0.0
        while len(got) < len(whole):
            try:
                chunk = dl.recv(64 * 1024)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
            cut = time.monotonic() - start
            time.sleep(0.05)
        # Not before the grace period is over (it counts among the calls the
        # drain waits for), and well before the whole 16 MiB at this pace.
        assert len(got) < len(whole), "a download past the grace period must be cut"
        assert 0.9 <= cut < 30, cut
        assert got == whole[:len(got)]
        dl.close()
        h.server.proc.wait(timeout=60)
        assert time.monotonic() - start < 40
        assert h.server.proc.returncode == 0
    finally:
        h.close()


def test_error_statuses_with_curl(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Errors: each status the plane produces, as curl sees it
    (`-w %{http_code}` and the JSON body), and the same through urllib."""
    (tmp_path / "tokens").write_text(
        "alice-token-0123456789 alice quota=1MiB\nbob-token-0123456789ab bob\n")
    h = Http(tmp_path, f"--auth-tokens={tmp_path / 'tokens'}", "--memory-limit=16MiB")
    alice = "Authorization: Bearer alice-token-0123456789"
    bob = "Authorization: Bearer bob-token-0123456789ab"
    try:
        files = {}
        for name, arr in (("small", np.ones(4, np.float32)),
                          ("quota", np.ones(512 * 1024, np.float32)),    # 2 MiB
                          ("memory", np.ones(8 * MiB, np.float32))):     # 32 MiB
            files[name] = tmp_path / f"{name}.npy"
            np.save(files[name], arr)
        assert h.put(np.ones(4, np.float32), "?name=a", headers=ALICE)[0] == 201
        assert h.put(np.ones(4, np.float32), "?name=g&requires_grad=1",
                     headers=ALICE)[0] == 201
        size = len(npy(np.ones(4, np.float32)))
        cases: list[tuple[int, str, list[str]]] = [
            (401, "UNAUTHENTICATED", ["/v1/tensors/a"]),
            (401, "UNAUTHENTICATED", ["-H", "Authorization: Bearer nope-0123456789abc",
                                      "/v1/tensors/a"]),
            (404, "NOT_FOUND", ["-H", alice, "/v1/tensors/nope"]),
            (404, "NOT_FOUND", ["-H", bob, "/v1/tensors/a"]),  # alice's
            (400, "INVALID_ARGUMENT", ["-H", alice, "/v1/tensors/a?dtype=float99"]),
            (400, "INVALID_ARGUMENT", ["-H", alice, "/v1/tensors/a?bogus"]),
            (409, "FAILED_PRECONDITION", ["-H", alice, "/v1/tensors/g"]),
            (409, "ALREADY_EXISTS", ["-H", alice, "-T", str(files["small"]),
                                     "/v1/tensors?name=a"]),
            (429, "RESOURCE_EXHAUSTED", ["-H", alice, "-T", str(files["quota"]),
                                         "/v1/tensors?name=q"]),
            (507, "RESOURCE_EXHAUSTED", ["-H", bob, "-T", str(files["memory"]),
                                         "/v1/tensors?name=m"]),
            (405, "UNIMPLEMENTED", ["-H", alice, "-X", "PATCH", "/v1/tensors/a"]),
            (413, "INVALID_ARGUMENT", ["-H", alice, "-X", "DELETE", "--data-binary", "x",
                                       "/v1/tensors/a"]),
            (416, "OUT_OF_RANGE", ["-H", alice, "-H", f"Range: bytes={size}-",
                                   "/v1/tensors/a"]),
        ]
        for want, code, args in cases:
            out = tmp_path / "body"
            out.unlink(missing_ok=True)
            *opts, path = args
            r = curl("-o", str(out), "-D", str(tmp_path / "head"), "-w", "%{http_code}",
                     *opts, h.base + path)
            assert r.stdout == str(want), (args, r.stdout, r.stderr)
            e = error(out.read_bytes())
            assert e["code"] == code, (args, e)
            if want == 401:
                assert "www-authenticate: bearer" in (tmp_path / "head").read_text().lower()
            # urllib: the same status and body.
            headers = {}
            body = None
            method = "GET"
            it = iter(opts)
            for o in it:
                v = next(it)
                if o == "-H":
                    k, _, val = v.partition(": ")
                    headers[k] = val
                elif o == "-T":
                    body, method = pathlib.Path(v).read_bytes(), "PUT"
                elif o == "-X":
                    method = v
                elif o == "--data-binary":
                    body = v.encode()
            status, _, ubody = h.request(method, path, body, headers)
            assert status == want, (args, status, ubody)
            assert error(ubody) == e, (args, ubody, e)
        # None of the refused uploads stored anything.
        for name in ("q", "m"):
            assert h.request("GET", f"/v1/tensors/{name}/info", headers=ALICE)[0] == 404
        # 403 is PERMISSION_DENIED, which only EmptyCache returns (not served
        # over HTTP); 503 is the drain's (test_drain_answers_503...).
    finally:
        h.close()



def test_drain_cuts_uploads_after_the_grace_period(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Shutdown: an upload still running when --shutdown-grace
    is over fails with 503 at its next piece of body, so a client that keeps
    sending cannot hold the server up."""
    h = Http(tmp_path, "--shutdown-grace=1")
    try:
        body = npy(np.ones(4 * MiB, np.float32))
        up = open_request(h.port, (
            "PUT /v1/tensors?name=up HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:MiB])
        wait_for("the upload running",
                 lambda: json.loads(h.request("GET", "/v1/stats")[2])
                 .get("active_streams", 0) == 1)
        start = time.monotonic()
        h.server.proc.send_signal(signal.SIGTERM)
        # The client goes on sending, slowly (16 KiB each 50 ms: 15 s more
        # of body), past the grace period, until an answer comes.
        sent = MiB
        up.setblocking(False)
        answered = False
        while sent < len(body) and time.monotonic() - start < 60:
            try:
                answered = up.recv(1, socket.MSG_PEEK) != b""
                break
            except BlockingIOError:
                pass
            try:
                sent += up.send(body[sent:sent + 16 * 1024])
            except BlockingIOError:
                pass
            time.sleep(0.05)
        cut = time.monotonic() - start
        assert answered and sent < len(body), (sent, cut)
        assert 0.9 <= cut < 30, cut
        up.setblocking(True)
        up.settimeout(30)
        status, _, rest = read_head(up)
        rest += read_to_end(up)
        up.close()
        assert status == 503, rest
        e = error(rest)
        assert e["code"] == "UNAVAILABLE" and "nothing was stored" in e["message"], e
        h.server.proc.wait(timeout=60)
        assert h.server.proc.returncode == 0
    finally:
        h.close()


def test_request_size_limits_and_ranges_httplib_cannot_parse(tmp_path: pathlib.Path) -> None:
    """docs/http.md, Slow clients and Ranges: request lines and header lines
    of at most 8 KiB, at most 16 query parameters, each refusal a JSON
    error; a Range header that is not a byte range is ignored (200 with
    everything), not refused."""
    h = Http(tmp_path)
    try:
        a = np.arange(1000, dtype=np.float32)
        assert h.put(a, "?name=a")[0] == 201
        whole = npy(a)
        cases = [
            (414, "INVALID_ARGUMENT", ["/v1/tensors?prefix=" + "p" * 8300]),
            (400, "INVALID_ARGUMENT", ["-H", "X-Big: " + "b" * 8300, "/v1/tensors"]),
            (400, "INVALID_ARGUMENT", ["-X", "FROB", "/v1/tensors"]),
            (400, "INVALID_ARGUMENT",
             ["/v1/tensors?" + "&".join(f"p{i}=1" for i in range(17))]),
        ]
        for want, code, args in cases:
            *opts, path = args
            out = tmp_path / "body"
            r = curl("-o", str(out), "-w", "%{http_code}", *opts, h.base + path)
            assert r.stdout == str(want), (args[0][:40], r.stdout, r.stderr)
            assert error(out.read_bytes())["code"] == code
        # Under the limits: served.
        assert h.request("GET", "/v1/tensors?prefix=" + "p" * 8000)[0] == 200
        assert h.request("GET", "/v1/tensors", headers={"X-Big": "b" * 8000})[0] == 200
        status, _, body = h.request("GET", "/v1/tensors/a?" + "&".join(
            ["cpu", "detach", "force", "format=npy"]))
        assert status == 200 and body == whole
        # Ranges httplib's own parser refuses: another unit, a reversed
        # range, garbage. Each is ignored.
        for value in ("items=0-9", "bytes=9-2", "bytes=abc"):
            status, headers, body = h.request("GET", "/v1/tensors/a",
                                              headers={"Range": value})
            assert status == 200 and body == whole, (value, status, body[:200])
            assert "Content-Range" not in headers
            status, headers, body = h.request("HEAD", "/v1/tensors/a",
                                              headers={"Range": value})
            assert status == 200 and int(headers["Content-Length"]) == len(whole)
        # A valid one still gives 206; a missing tensor with a bad Range is
        # still 404.
        status, _, body = h.request("GET", "/v1/tensors/a", headers={"Range": "bytes=0-9"})
        assert status == 206 and body == whole[:10]
        status, _, body = h.request("GET", "/v1/tensors/nope", headers={"Range": "items=0-1"})
        assert status == 404 and error(body)["code"] == "NOT_FOUND"
        # An upload with one: refused with JSON, nothing stored.
        status, _, body = h.request("PUT", "/v1/tensors?name=r", npy(a),
                                    headers={"Range": "items=0-1"})
        assert status == 416 and error(body)["code"] == "INVALID_ARGUMENT", body
        assert h.request("GET", "/v1/tensors/r/info")[0] == 404
    finally:
        h.close()

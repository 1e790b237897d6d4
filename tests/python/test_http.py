"""The HTTP data plane (--http-listen, docs/http.md) on the real server:
Python's urllib with np.load as the reference, curl (download, resume with
-C -, HEAD, upload, delete, the error statuses), TLS with the gRPC side's
certificates, tokens and tenant limits, and a real browser (headless
Chromium) fetch()ing a tensor from a page of another origin.

Chromium and curl come from Debian (scripts/setup.sh installs both); a
missing one fails these tests rather than skipping them.
"""

from __future__ import annotations

import http.server
import io
import json
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import numpy as np
import pytest

from conftest import running_server


class Http:
    """A server with the HTTP data plane, and requests to it."""

    def __init__(self, tmp: pathlib.Path, *flags: str, scheme: str = "http") -> None:
        self.tmp = tmp
        port_file = tmp / "http-port"
        self._cm = running_server(tmp, "--http-listen=127.0.0.1:0",
                                  f"--http-port-file={port_file}", *flags)
        self.server = self._cm.__enter__()
        self.port = int(port_file.read_text())
        self.base = f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                context: Any = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30, context=context) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def put(self, array: np.ndarray, query: str = "", **kw: Any) -> tuple[int, Any]:
        buf = io.BytesIO()
        np.save(buf, array)
        status, _, body = self.request("PUT", "/v1/tensors" + query, buf.getvalue(), **kw)
        return status, json.loads(body)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    h = Http(tmp_path_factory.mktemp("http"), "--chunk-bytes=64KiB",
             "--http-cors-origin=*")
    yield h
    h.close()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (scripts/setup.sh installs it)")
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True,
                          timeout=60)


def error(body: bytes) -> dict[str, str]:
    e = json.loads(body)
    assert set(e) == {"code", "message"}
    return e


def test_upload_download_roundtrip_with_numpy(web: Http) -> None:
    a = np.random.default_rng(1).standard_normal((300, 257)).astype(np.float32)
    status, info = web.put(a, "?name=rt")
    assert status == 201, info
    assert info["name"] == "rt" and info["shape"] == [300, 257]
    assert info["dtype"] == "DTYPE_FLOAT32"
    status, headers, body = web.request("GET", "/v1/tensors/rt")
    assert status == 200
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Content-Type"] == "application/x-npy"
    assert headers["ETag"].startswith('"' + info["handle"])
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), a)
    assert body == npy(a)
    # Cast in the stream; raw bytes with dtype and shape as headers.
    status, _, body = web.request("GET", "/v1/tensors/rt?dtype=float64")
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), a.astype(np.float64))
    status, headers, body = web.request("GET", f"/v1/tensors/{info['handle']}?format=raw")
    assert headers["X-Tensor-Dtype"] == "float32"
    assert headers["X-Tensor-Shape"] == "300,257"
    assert body == a.tobytes()


def test_info_list_stats_delete(web: Http) -> None:
    status, info = web.put(np.arange(6, dtype=np.int64).reshape(2, 3), "?name=lst.a")
    assert status == 201
    status, _, body = web.request("GET", "/v1/tensors/lst.a/info")
    assert status == 200 and json.loads(body) == info
    status, _, body = web.request("GET", "/v1/tensors?prefix=lst.")
    listed = json.loads(body)
    assert [t["name"] for t in listed["tensors"]] == ["lst.a"]
    assert listed["tensors"][0] == info
    status, _, body = web.request("GET", "/v1/stats")
    stats = json.loads(body)
    assert status == 200 and stats["tensors"] >= 1 and stats["devices"][0]["device"] == "cpu"
    status, _, body = web.request("DELETE", "/v1/tensors/lst.a")
    assert status == 200 and json.loads(body) == {"deleted": 1}
    status, _, body = web.request("GET", "/v1/tensors/lst.a/info")
    assert status == 404 and error(body)["code"] == "NOT_FOUND"


def test_range_head_and_etag(web: Http) -> None:
    a = np.arange(100_000, dtype=np.float32)
    web.put(a, "?name=rng")
    whole = npy(a)
    status, headers, body = web.request("GET", "/v1/tensors/rng",
                                        headers={"Range": "bytes=1000-70999"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes 1000-70999/{len(whole)}"
    assert body == whole[1000:71000]
    status, headers, body = web.request("GET", "/v1/tensors/rng",
                                        headers={"Range": "bytes=-77"})
    assert status == 206 and body == whole[-77:]
    status, headers, body = web.request("GET", "/v1/tensors/rng",
                                        headers={"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    # Ranges the HTTP library's own parser refuses: a reversed one and
    # another unit are ignored (200, everything), a last byte past INT64_MAX
    # runs to the end; HEAD alike.
    for value in ("bytes=9-2", "items=0-1"):
        for method in ("GET", "HEAD"):
            status, headers, body = web.request(method, "/v1/tensors/rng",
                                                headers={"Range": value})
            assert status == 200, (value, method, status, body)
            assert int(headers["Content-Length"]) == len(whole)
            assert body == (whole if method == "GET" else b"")
    status, headers, body = web.request(
        "GET", "/v1/tensors/rng", headers={"Range": "bytes=10-" + "9" * 25})
    assert status == 206 and body == whole[10:]
    # HEAD: the headers alone.
    status, headers, body = web.request("HEAD", "/v1/tensors/rng")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == len(whole)
    etag = headers["ETag"]
    status, _, body = web.request("GET", "/v1/tensors/rng",
                                  headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    # If-Range with another tag: sent whole.
    status, _, body = web.request("GET", "/v1/tensors/rng",
                                  headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert status == 200 and body == whole


def test_curl_download_resume_upload_delete(web: Http, tmp_path: pathlib.Path) -> None:
    a = np.random.default_rng(2).integers(0, 1000, (512, 1024)).astype(np.int32)
    src = tmp_path / "a.npy"
    np.save(src, a)
    r = curl("-f", "-T", str(src), f"{web.base}/v1/tensors?name=curl.a")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "curl.a"
    out = tmp_path / "out.npy"
    r = curl("-f", "-o", str(out), f"{web.base}/v1/tensors/curl.a")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), a)
    # Cut the file short and let curl resume it (Range from its size).
    data = out.read_bytes()
    out.write_bytes(data[:777_777])
    r = curl("-f", "-C", "-", "-o", str(out), "-w", "%{http_code}",
             f"{web.base}/v1/tensors/curl.a")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "206"
    assert out.read_bytes() == data
    r = curl("-f", "-I", f"{web.base}/v1/tensors/curl.a")
    assert r.returncode == 0 and f"content-length: {len(data)}" in r.stdout.lower()
    # From a pipe: a chunked body of unknown length.
    with open(src, "rb") as f:
        r = subprocess.run(["curl", "-sS", "-f", "-T", "-",
                            f"{web.base}/v1/tensors?name=curl.chunked"],
                           stdin=f, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    status, _, body = web.request("GET", "/v1/tensors/curl.chunked")
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), a)
    r = curl("-f", "-X", "DELETE", f"{web.base}/v1/tensors/curl.a")
    assert r.returncode == 0 and json.loads(r.stdout) == {"deleted": 1}
    r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{web.base}/v1/tensors/curl.a")
    assert r.stdout == "404"


def test_error_statuses(web: Http, tmp_path: pathlib.Path) -> None:
    web.put(np.ones(4, np.float32), "?name=err.a")
    # The .numpy() refusal, with PyTorch's text: 409.
    status, g = web.put(np.ones(3, np.float32), "?name=err.grad&requires_grad=1")
    assert status == 201
    status, _, body = web.request("GET", "/v1/tensors/err.grad")
    e = error(body)
    assert status == 409 and e["code"] == "FAILED_PRECONDITION"
    assert "Can't call numpy() on Tensor that requires grad" in e["message"]
    status, _, body = web.request("GET", "/v1/tensors/err.grad?detach")
    assert status == 200
    cases = [
        ("GET", "/v1/tensors/nope", None, {}, 404, "NOT_FOUND"),
        ("GET", "/v2/nothing", None, {}, 404, "NOT_FOUND"),
        ("GET", "/v1/tensors/err.a?dtype=float99", None, {}, 400, "INVALID_ARGUMENT"),
        ("GET", "/v1/tensors/err.a?bogus=1", None, {}, 400, "INVALID_ARGUMENT"),
        ("GET", "/v1/tensors/err.a?format=raw&format=npy", None, {}, 400,
         "INVALID_ARGUMENT"),
        ("GET", "/v1/tensors/%zz", None, {}, 400, "INVALID_ARGUMENT"),
        ("PUT", "/v1/tensors?name=err.a", npy(np.ones(2)), {}, 409, "ALREADY_EXISTS"),
        ("PUT", "/v1/tensors?name=err.b", b"not a npy file at all", {}, 400,
         "INVALID_ARGUMENT"),
        ("PUT", "/v1/tensors?name=err.c&device=cuda:7", npy(np.ones(2)), {}, None, None),
        ("POST", "/v1/tensors/err.a", b"x", {}, 405, "UNIMPLEMENTED"),
        ("DELETE", "/v1/tensors/err.a", b"body", {}, 413, "INVALID_ARGUMENT"),
    ]
    for method, path, body, headers, want, code in cases:
        status, _, out = web.request(method, path, body, headers)
        if want is None:
            assert status in (400, 404, 409), (path, status, out)
            continue
        assert status == want, (method, path, status, out)
        assert error(out)["code"] == code, (path, out)
    # Requests the HTTP library refuses before any handler: JSON errors too.
    for raw, want in ((b"FOO /v1/tensors HTTP/1.1\r\nHost: x\r\n\r\n", 400),
                      (b"GET /v1/tensors/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414)):
        with socket.create_connection(("127.0.0.1", web.port)) as s:
            s.settimeout(20)
            s.sendall(raw)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % want), reply
        assert error(body)["code"] == "INVALID_ARGUMENT", reply
    # A body cut short: nothing stored.
    data = npy(np.ones(100_000, np.float32))
    with socket.create_connection(("127.0.0.1", web.port)) as s:
        s.sendall(b"PUT /v1/tensors?name=err.short HTTP/1.1\r\nHost: x\r\n"
                  + f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:50_000])
        s.shutdown(socket.SHUT_WR)
        s.settimeout(20)
        while s.recv(4096):
            pass
    status, _, out = web.request("GET", "/v1/tensors/err.short/info")
    assert status == 404, out
    # A Content-Length that is no plain length (httplib reads "-1" and one
    # past INT64_MAX as 2^64 - 1) still counts as a body: 413 at once, not a
    # server reading whatever comes into memory.
    for length in (b"-1", b"99999999999999999999", b"5x"):
        with socket.create_connection(("127.0.0.1", web.port)) as s:
            s.sendall(b"DELETE /v1/tensors/err.a HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: " + length + b"\r\n\r\n" + b"x" * 65536)
            s.settimeout(20)
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(4096)
                assert chunk, (length, reply)
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 413 "), (length, reply)
    status, _, _ = web.request("GET", "/v1/tensors/err.a/info")
    assert status == 200
    # The server is fine after all that.
    status, _, _ = web.request("GET", "/v1/tensors/err.a")
    assert status == 200


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server has ended the connection (EOF, reset, or a reply)."""
    s.setblocking(False)
    try:
        return s.recv(4096) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def test_request_heads_are_bounded(web: Http) -> None:
    # A request line without its newline: the server drops the connection
    # once the head passes 64 KiB, rather than gather the line in memory.
    sent = 0
    with socket.create_connection(("127.0.0.1", web.port)) as s:
        s.settimeout(20)
        try:
            while sent < 64 << 20:
                s.sendall(b"x" * 65536)
                sent += 65536
        except OSError:
            pass
    assert sent < 64 << 20, "the server read 64 MiB of one request line"
    # A head sent a byte at a time, each well within the read timeout: cut
    # off when the head's 10 s are up, so it cannot hold a worker for ever.
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", web.port)) as s:
        closed = False
        for byte in b"GET /v1/tensors/x HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
            if closed or closed_by_server(s):
                closed = True
                break
            time.sleep(0.25)
    assert closed, "a head trickled for 50 s was still being read"
    assert time.monotonic() - start >= 9
    # Heads of an ordinary size are served, kept alive and pipelined.
    request = (b"GET /v1/tensors HTTP/1.1\r\nHost: x\r\nX-Pad: "
               + b"p" * 7000 + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", web.port)) as s:
        s.settimeout(20)
        s.sendall(request * 3)
        reply = b""
        while reply.count(b"HTTP/1.1 200 ") < 3:
            chunk = s.recv(65536)
            assert chunk, reply
            reply += chunk


def test_tokens_tenants_and_limits(tmp_path: pathlib.Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice-token-0123456789 alice quota=1MiB\n"
                      "bob-token-0123456789ab bob streams=1\n")
    h = Http(tmp_path, f"--auth-tokens={tokens}", "--memory-limit=16MiB")
    try:
        alice = {"Authorization": "Bearer alice-token-0123456789"}
        bob = {"Authorization": "bearer bob-token-0123456789ab"}
        status, headers, body = h.request("GET", "/v1/tensors")
        assert status == 401 and error(body)["code"] == "UNAUTHENTICATED"
        assert headers["WWW-Authenticate"] == "Bearer"
        status, _, body = h.request("GET", "/v1/tensors",
                                    headers={"Authorization": "Bearer wrong-token-000000"})
        assert status == 401
        status, info = h.put(np.ones(1000, np.float32), "?name=w", headers=alice)
        assert status == 201
        # Another tenant's tensor does not exist for bob.
        status, _, body = h.request("GET", "/v1/tensors/w", headers=bob)
        assert status == 404
        status, _, body = h.request("GET", "/v1/tensors/w", headers=alice)
        assert status == 200
        # Over alice's quota: 429; over the server's memory: 507.
        status, e = h.put(np.ones(512 * 1024, np.float32), "?name=big", headers=alice)
        assert status == 429 and e["code"] == "RESOURCE_EXHAUSTED", e
        status, e = h.put(np.ones(8 << 20, np.float32), "?name=huge", headers=bob)
        assert status == 507 and e["code"] == "RESOURCE_EXHAUSTED", e
        # bob has one stream: a download he does not read holds it (12 MB
        # out, more than the sockets' buffers take).
        status, info = h.put(np.ones(1_500_000, np.float32), "?name=s", headers=bob)
        assert status == 201, info
        with socket.create_connection(("127.0.0.1", h.port)) as s:
            s.sendall(b"GET /v1/tensors/s?dtype=float64 HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer bob-token-0123456789ab\r\n\r\n")
            assert s.recv(10).startswith(b"HTTP/1.1")
            time.sleep(0.5)
            status, _, body = h.request("GET", "/v1/tensors/s", headers=bob)
            assert status == 429 and "stream" in error(body)["message"], body
            # alice's streams are her own.
            assert h.request("GET", "/v1/tensors/w", headers=alice)[0] == 200
        deadline = time.monotonic() + 10
        while h.request("GET", "/v1/tensors/s", headers=bob)[0] != 200:
            assert time.monotonic() < deadline, "the stream slot never came back"
            time.sleep(0.05)
    finally:
        h.close()


def test_tls_with_the_grpc_certificates(tmp_path: pathlib.Path) -> None:
    import ssl
    d = tmp_path
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
                        "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    h = Http(d, f"--tls-cert={d / 'cert.pem'}", f"--tls-key={d / 'key.pem'}",
             scheme="https")
    try:
        ctx = ssl.create_default_context(cafile=str(d / "cert.pem"))
        a = np.arange(10, dtype=np.float32)
        status, info = h.put(a, "?name=t", context=ctx)
        assert status == 201
        status, _, body = h.request("GET", "/v1/tensors/t", context=ctx)
        np.testing.assert_array_equal(np.load(io.BytesIO(body)), a)
        # Plain HTTP to the TLS port gets nothing.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{h.port}/v1/tensors", timeout=5)
    finally:
        h.close()


PAGE = """<!doctype html><html><body><pre id="out">running</pre><script>
(async () => {
  const out = document.getElementById("out");
  try {
    const r = await fetch("%(url)s/v1/tensors/browser?format=raw");
    const shape = r.headers.get("X-Tensor-Shape");
    const a = new Float32Array(await r.arrayBuffer());
    let sum = 0;
    for (const v of a) sum += v;
    out.textContent = "RESULT " + r.status + " " + shape + " " + a.length + " " + sum;
  } catch (e) {
    out.textContent = "RESULT error " + e;
  }
})();
</script></body></html>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no headless Chromium found: install Debian's chromium "
                "(scripts/setup.sh does)")


def browser_result(web: Http, tmp_path: pathlib.Path) -> str:
    """What the page shows after fetch()ing tensor 'browser' from `web`."""
    browser = chromium()
    (tmp_path / "index.html").write_text(PAGE % {"url": web.base})

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    # The page is served by another origin (another port): the fetch is
    # cross-origin and works only with the CORS headers.
    handler = lambda *args: Quiet(*args, directory=str(tmp_path))  # noqa: E731
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as page:
        threading.Thread(target=page.serve_forever, daemon=True).start()
        try:
            r = subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--virtual-time-budget=10000", "--dump-dom",
                 f"http://127.0.0.1:{page.server_address[1]}/index.html"],
                capture_output=True, text=True, timeout=120)
        finally:
            page.shutdown()
    assert "RESULT" in r.stdout, r.stdout + r.stderr
    return r.stdout.split("RESULT ", 1)[1].split("<", 1)[0].strip()


def test_browser_fetch(web: Http, tmp_path: pathlib.Path) -> None:
    a = np.arange(1000, dtype=np.float32)
    status, _ = web.put(a, "?name=browser")
    assert status == 201
    result = browser_result(web, tmp_path)
    assert result == f"200 1000 1000 {int(a.sum())}", result


def test_browser_refused_without_cors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "server").mkdir()
    h = Http(tmp_path / "server")
    try:
        status, _ = h.put(np.arange(1000, dtype=np.float32), "?name=browser")
        assert status == 201
        result = browser_result(h, tmp_path)
        assert result.startswith("error"), result
    finally:
        h.close()

"""TLS, bearer tokens and tenants from the Python client, against real
servers (--tls-cert/--tls-key, --tls-client-ca, --auth-tokens) with
certificates made by the openssl command for this session.

Token tests run on every client path the suite uses: grpcio, the native
extension and shared memory. TLS tests run on grpcio and shared memory;
the native extension has no TLS, so a TLS client takes grpcio for its
transfers (test_tls_clients_fall_back_from_native says so, and is the only
native case for TLS).
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import time
from typing import Any, Iterator

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca

from conftest import native_built, running_server

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
TOKENS = f"{ALICE} alice\n{BOB} bob\n{ADMIN} ops admin\n"
QUOTA_TOKEN = "quota-token-0123456789abcdef"


class Certificates:
    """PEM files: a CA, a server certificate for 127.0.0.1 and localhost,
    a client certificate, and an unrelated CA."""

    def __init__(self, d: pathlib.Path) -> None:
        self.dir = d
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca, cn in (("ca", "tensorcast test CA"), ("other-ca", "unrelated CA")):
            self._openssl("req", "-x509", *key, "-keyout", d / f"{ca}.key",
                          "-out", d / f"{ca}.pem", "-days", "2", "-subj", f"/CN={cn}",
                          "-addext", "basicConstraints=critical,CA:TRUE",
                          "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        leaves = (("server", "localhost",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                  ("client", "test client", "extendedKeyUsage=clientAuth\n"))
        for serial, (name, cn, ext) in enumerate(leaves, start=1):
            self._openssl("req", *key, "-keyout", d / f"{name}.key", "-out",
                          d / f"{name}.csr", "-subj", f"/CN={cn}")
            (d / f"{name}.ext").write_text(ext)
            self._openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem",
                          "-CAkey", d / "ca.key", "-set_serial", str(serial), "-days", "2",
                          "-extfile", d / f"{name}.ext", "-out", d / f"{name}.pem")

    @staticmethod
    def _openssl(*args: Any) -> None:
        r = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 0, f"openssl {args[0]}: {r.stderr}"

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def pem(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


def tls_flags(certs: Certificates) -> list[str]:
    return [f"--tls-cert={certs.path('server.pem')}", f"--tls-key={certs.path('server.key')}"]


@pytest.fixture(scope="module")
def tls_server(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_server(tmp_path_factory.mktemp("tls"), "--shared-memory",
                        *tls_flags(certs)) as s:
        yield s


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("tokens")
    (tmp / "tokens").write_text(TOKENS + f"{QUOTA_TOKEN} small quota=1MiB\n")
    with running_server(tmp, "--shared-memory", f"--auth-tokens={tmp / 'tokens'}") as s:
        yield s


@pytest.fixture(params=["grpcio", "native", "shm"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The connect() arguments of one client path."""
    if request.param == "native" and not native_built():
        pytest.skip("tensorcast._native was not built")
    monkeypatch.setenv("TENSORCAST_NATIVE", "1" if request.param == "native" else "0")
    return {"native": request.param == "native",
            "shared_memory": "auto" if request.param == "shm" else False}


@pytest.fixture(params=["grpcio", "shm"])
def tls_path(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The paths that apply to TLS (not native: see the module's text)."""
    return {"native": False, "shared_memory": "auto" if request.param == "shm" else False}


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENSORCAST_TOKEN", raising=False)


def round_trip(c: tc.Client, shm: bool) -> None:
    """A Put and a Fetch large enough for shared memory, and a small one."""
    a = (np.arange(1 << 19) % 2048).astype(np.float32).reshape(512, 1024)  # 2 MiB
    t = c.from_numpy(a)
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(t.to(tc.float16).numpy(), a.astype(np.float16))
    assert c.tensor([1.5, 2.5]).tolist() == [1.5, 2.5]
    assert c.shared_memory == shm
    t.delete()


# -- TLS -----------------------------------------------------------------------


def test_tls_round_trip(tls_server: Any, certs: Certificates, tls_path: dict) -> None:
    with tc.connect(tls_server.target, root_certificates=certs.pem("ca.pem"),
                    default=False, **tls_path) as c:
        assert c.tls and not c.native
        round_trip(c, shm=bool(tls_path["shared_memory"]))
    # PEM as str works the same.
    with tc.connect(tls_server.target, root_certificates=certs.pem("ca.pem").decode(),
                    default=False, **tls_path) as c:
        assert c.server_info()["version"]


def test_tls_clients_fall_back_from_native(tls_server: Any, certs: Certificates,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The native path has no TLS: by default a TLS client takes grpcio;
    asking for the native path with TLS is an error, not plaintext."""
    monkeypatch.setenv("TENSORCAST_NATIVE", "1")
    with tc.connect(tls_server.target, root_certificates=certs.pem("ca.pem"),
                    default=False) as c:
        assert not c.native
        round_trip(c, shm=False)
    if native_built():
        with pytest.raises(ValueError, match="native"):
            tc.Client(tls_server.target, native=True, root_certificates=certs.pem("ca.pem"),
                      connect_timeout=0)


def test_plaintext_client_against_tls_server_fails_quickly(tls_server: Any) -> None:
    start = time.monotonic()
    with pytest.raises(tc.UnavailableError, match="root_certificates"):
        tc.connect(tls_server.target, connect_timeout=1, default=False, native=False)
    assert time.monotonic() - start < 5
    # Without the connect check, the first call fails at once.
    for native in ([False, True] if native_built() else [False]):
        c = tc.Client(tls_server.target, connect_timeout=0, native=native)
        start = time.monotonic()
        with pytest.raises(tc.UnavailableError):
            c.zeros(4)
        with pytest.raises(tc.UnavailableError):
            c.from_numpy(np.zeros(1 << 19, dtype=np.float32))
        assert time.monotonic() - start < 5
        c.close()


def test_client_trusting_another_ca_fails(tls_server: Any, certs: Certificates) -> None:
    start = time.monotonic()
    with pytest.raises(tc.UnavailableError):
        tc.connect(tls_server.target, root_certificates=certs.pem("other-ca.pem"),
                   connect_timeout=1, default=False)
    assert time.monotonic() - start < 5


def test_mutual_tls(certs: Certificates, tmp_path: pathlib.Path, tls_path: dict) -> None:
    with running_server(tmp_path, "--shared-memory", *tls_flags(certs),
                        f"--tls-client-ca={certs.path('ca.pem')}") as s:
        with tc.connect(s.target, root_certificates=certs.pem("ca.pem"),
                        certificate_chain=certs.pem("client.pem"),
                        private_key=certs.pem("client.key"), default=False, **tls_path) as c:
            round_trip(c, shm=bool(tls_path["shared_memory"]))
        with pytest.raises(tc.UnavailableError):
            tc.connect(s.target, root_certificates=certs.pem("ca.pem"), connect_timeout=1,
                       default=False)


def test_pem_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="not PEM"):
        tc.Client("127.0.0.1:1", root_certificates="/etc/ssl/ca.pem", connect_timeout=0)
    with pytest.raises(ValueError, match="together"):
        tc.Client("127.0.0.1:1", certificate_chain=b"-----BEGIN CERTIFICATE-----",
                  connect_timeout=0)


def test_aio_tls(tls_server: Any, certs: Certificates) -> None:
    async def main() -> None:
        async with tca.connect(tls_server.target, root_certificates=certs.pem("ca.pem"),
                               default=False, native=False) as c:
            t = await c.from_numpy(np.arange(10.0))
            np.testing.assert_array_equal(await t.numpy(), np.arange(10.0))
        with pytest.raises(tc.UnavailableError, match="root_certificates"):
            await tca.connect(tls_server.target, connect_timeout=1, default=False,
                              native=False)
    asyncio.run(main())


# -- tokens and tenants --------------------------------------------------------


def test_token_argument(token_server: Any, path: dict) -> None:
    with tc.connect(token_server.target, token=ALICE, default=False, **path) as c:
        assert c.native == path["native"]
        round_trip(c, shm=bool(path["shared_memory"]))
        assert c.server_info()["tenant"]["tenant"] == "alice"


def test_token_from_environment(token_server: Any, path: dict,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORCAST_TOKEN", BOB)
    with tc.connect(token_server.target, default=False, **path) as c:
        round_trip(c, shm=bool(path["shared_memory"]))
        assert c.server_info()["tenant"]["tenant"] == "bob"
    # An argument wins over the environment.
    with tc.connect(token_server.target, token=ALICE, default=False, **path) as c:
        assert c.server_info()["tenant"]["tenant"] == "alice"


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef"])
def test_missing_or_wrong_token_is_unauthenticated(token_server: Any, path: dict,
                                                   token: Any) -> None:
    with tc.connect(token_server.target, token=ALICE, default=False) as alice:
        mine = alice.zeros(1 << 19)  # 2 MiB: shared memory where it is on
        with tc.connect(token_server.target, token=token, default=False, **path) as c:
            calls = [lambda: c.zeros(4), lambda: c.get(mine.handle), c.list, c.stats,
                     lambda: c.from_numpy(np.ones(1 << 19, dtype=np.float32)),
                     lambda: tc.RemoteTensor(c, mine._meta).numpy()]
            for call in calls:
                with pytest.raises(tc.UnauthenticatedError) as e:
                    call()
                assert isinstance(e.value, PermissionError)
                assert e.value.code.name == "UNAUTHENTICATED"
        np.testing.assert_array_equal(mine.numpy(), np.zeros(1 << 19, dtype=np.float32))


def test_tenants_see_only_their_own(token_server: Any, path: dict) -> None:
    with tc.connect(token_server.target, token=ALICE, default=False, **path) as alice, \
            tc.connect(token_server.target, token=BOB, default=False, **path) as bob:
        a = alice.from_numpy(np.arange(1 << 19, dtype=np.float32), name="sec-weights")
        with pytest.raises(tc.NotFoundError):
            bob.get(a.handle)
        with pytest.raises(tc.NotFoundError):
            bob.get("sec-weights")
        with pytest.raises(tc.NotFoundError):
            tc.RemoteTensor(bob, a._meta).numpy()  # a handle learned out of band
        with pytest.raises(tc.NotFoundError):
            bob.delete(a.handle)
        assert a.handle not in {t.handle for t in bob.list()}
        assert a.handle in {t.handle for t in alice.list()}
        # Names are per tenant.
        b = bob.tensor([1.0], name="sec-weights")
        assert bob.get("sec-weights").handle == b.handle
        np.testing.assert_array_equal(alice.get("sec-weights").numpy(),
                                      np.arange(1 << 19, dtype=np.float32))
        a.delete()
        b.delete()


def test_admin_only_calls(token_server: Any) -> None:
    with tc.connect(token_server.target, token=BOB, default=False) as bob, \
            tc.connect(token_server.target, token=ADMIN, default=False) as admin:
        with pytest.raises(tc.PermissionDeniedError) as e:
            bob.empty_cache()
        assert isinstance(e.value, PermissionError)
        assert admin.empty_cache() >= 0
        assert bob.stats() == {}  # no devices: those are server-wide
        info = bob.server_info()
        assert info["tenant"]["tenant"] == "bob" and "tenants" not in info
        assert "cpu" in admin.stats()
        assert {"bob", "ops"} <= set(admin.server_info()["tenants"])


def test_quota_is_out_of_memory(token_server: Any, path: dict) -> None:
    with tc.connect(token_server.target, token=QUOTA_TOKEN, default=False, **path) as c:
        with pytest.raises(tc.OutOfMemoryError, match="quota"):
            c.from_numpy(np.ones(1 << 19, dtype=np.float32))  # 2 MiB > 1 MiB
        with pytest.raises(tc.OutOfMemoryError, match="quota"):
            c.zeros(1 << 19)
        assert c.server_info()["tenant"]["bytes"] == 0


def test_aio_token(token_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with tca.connect(token_server.target, token=ALICE, default=False,
                               native=False) as c:
            t = await c.tensor([1.0, 2.0])
            assert await t.tolist() == [1.0, 2.0]
            assert (await c.server_info())["tenant"]["tenant"] == "alice"
        monkeypatch.setenv("TENSORCAST_TOKEN", BOB)
        async with tca.connect(token_server.target, default=False, native=False) as c:
            assert (await c.server_info())["tenant"]["tenant"] == "bob"
        monkeypatch.delenv("TENSORCAST_TOKEN")
        async with tca.connect(token_server.target, default=False, native=False) as c:
            with pytest.raises(tc.UnauthenticatedError):
                await c.zeros(3)
    asyncio.run(main())

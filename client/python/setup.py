"""The optional native extension, tensorcast._native (everything else is in
pyproject.toml). It is built when the gRPC C++ library (pkg-config grpc++)
is found and the repository's client/cpp (the shared wire codec) is beside
this package; a build that fails leaves the
pure-grpcio client, which works the same, only slower. Set
TENSORCAST_NO_NATIVE=1 to skip it, or TENSORCAST_REQUIRE_NATIVE=1 (as
`make test-python` does) to make the install fail, saying why, when the
extension cannot be built: a missing prerequisite, or the compiler's error
(no Python.h without python3-dev, for one).

On CPython 3.11 and later the extension is built against the limited C API
(Py_LIMITED_API 3.11, where the buffer protocol joined it): one abi3 build,
tagged cp311-abi3, serves every later CPython (`make wheel` bundles it with
the libraries it needs). Older CPythons get a build for their version."""

import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def pkg_config(flag: str) -> list[str] | None:
    try:
        out = subprocess.run(["pkg-config", flag, "grpc++"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(out)


REQUIRED = os.environ.get("TENSORCAST_REQUIRE_NATIVE") == "1"


def skip_native(reason: str) -> list[Extension]:
    if REQUIRED:
        raise SystemExit(f"tensorcast: TENSORCAST_REQUIRE_NATIVE=1, but "
                         f"the native extension cannot be built: {reason}")
    print(f"tensorcast: {reason}; building the pure-Python client only")
    return []


def native_extensions() -> list[Extension]:
    if os.environ.get("TENSORCAST_NO_NATIVE"):
        return skip_native("TENSORCAST_NO_NATIVE is set")
    cflags, libs = pkg_config("--cflags"), pkg_config("--libs")
    if cflags is None or libs is None:
        return skip_native("pkg-config finds no grpc++ (the gRPC C++ "
                           "library: libgrpc++-dev and pkg-config on Debian)")
    headers = [os.path.join(ROOT, "client", "cpp", "codec.h"),
               os.path.join(ROOT, "common", "generic_call.h")]
    if not all(os.path.exists(h) for h in headers):
        return skip_native(f"no client/cpp/codec.h in {ROOT} (the package is "
                           "built outside the tensorcast repository)")
    return [Extension(
        "tensorcast._native",
        sources=["tensorcast/_native.cc"],
        # Rebuilt when these change (pip builds in client/python/build,
        # which outlives an install).
        depends=headers,
        include_dirs=[ROOT],
        define_macros=[("Py_LIMITED_API", "0x030B0000")] if LIMITED else [],
        py_limited_api=LIMITED,
        extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", *cflags],
        extra_link_args=libs,
        language="c++",
        # A failed build leaves the pure-Python client, unless required.
        optional=not REQUIRED,
    )]


class BuildExt(build_ext):
    """Removes, before building, any other build of tensorcast._native that
    client/python/build still holds (the build directory outlives an
    install: an older per-version _native.cpython-3XX-*.so would otherwise
    be installed beside the abi3 one, and Python prefers it)."""

    def run(self) -> None:
        for ext in self.extensions:
            fresh = os.path.basename(self.get_ext_filename(ext.name))
            stem = fresh.split(".", 1)[0]
            where = os.path.dirname(self.get_ext_fullpath(ext.name))
            if os.path.isdir(where):
                for f in os.listdir(where):
                    if f.startswith(stem + ".") and f.endswith(".so") and \
                            f != fresh:
                        os.remove(os.path.join(where, f))
        super().run()


# The limited API has the buffer protocol from 3.11.
LIMITED = sys.implementation.name == "cpython" and sys.version_info >= (3, 11)
setup(ext_modules=native_extensions(),
      cmdclass={"build_ext": BuildExt},
      options={"bdist_wheel": {"py_limited_api": "cp311"}} if LIMITED else {})

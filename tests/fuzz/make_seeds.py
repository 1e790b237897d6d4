#!/usr/bin/env python3
"""Writes the seed corpus in tests/fuzz/corpus/ (see README.md).

Run from the repository root with the project's venv, which has NumPy and
protobuf: .venv/bin/python tests/fuzz/make_seeds.py
The .npy files are np.save's own output; the protos come from the Python
client's generated modules. Existing seeds with the same names are replaced,
others (e.g. ones a fuzzer found worth keeping) are left alone.
"""
import io
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
from tensorcast.v1 import tensor_service_pb2 as pb  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def npy(array, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


def prefixed(b):
    return varint(len(b)) + b


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# npy: whole small files, as np.save writes them.
NPY = {
    "f32_2x3.npy": npy(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "be_i2_fortran.npy": npy(
        np.asfortranarray(np.arange(6, dtype=">i2").reshape(2, 3))),
    "bool_scalar.npy": npy(np.array(True)),
    "c16_empty.npy": npy(np.zeros((0,), dtype=np.complex128)),
    "u8_3.npy": npy(np.array([1, 2, 3], dtype=np.uint8)),
    "f16_v2.npy": npy(np.ones((2, 1), dtype=np.float16), version=(2, 0)),
    "i64_v3.npy": npy(np.array([7], dtype=np.int64), version=(3, 0)),
}
for name, data in NPY.items():
    write("npy", name, data)


# put_header, mode 0: header, piece size, the upload's bytes.
def put(header, data, piece=0):
    return b"\x00" + prefixed(header.SerializeToString()) + bytes([piece]) + data


raw = pb.PutHeader(dtype=pb.DTYPE_FLOAT32, shape=[2, 3], format=pb.FORMAT_RAW)
write("put_header", "raw_f32.bin",
      put(raw, np.arange(6, dtype=np.float32).tobytes()))
named = pb.PutHeader(dtype=pb.DTYPE_FLOAT16, shape=[2], name="x",
                     ttl_seconds=60, requires_grad=True, total_bytes=4)
write("put_header", "raw_named_grad.bin",
      put(named, np.ones(2, dtype=np.float16).tobytes(), piece=1))
f = NPY["be_i2_fortran.npy"]
write("put_header", "npy_fortran.bin",
      put(pb.PutHeader(format=pb.FORMAT_NPY, total_bytes=len(f)), f, piece=7))
f = NPY["f32_2x3.npy"]
write("put_header", "npy_checked.bin",
      put(pb.PutHeader(format=pb.FORMAT_NPY, dtype=pb.DTYPE_FLOAT32,
                       shape=[2, 3]), f))
write("put_header", "raw_no_dtype.bin",
      put(pb.PutHeader(shape=[1], device="cuda:0"), b"\x00"))


# put_header, mode 1: rank, (dim, stride)..., offset, storage, dtype byte.
def layout(dims, strides, offset, storage, flags=0):
    out = b"\x01" + bytes([len(dims)])
    for d, s in zip(dims, strides):
        out += zigzag(d) + zigzag(s)
    return out + zigzag(offset) + zigzag(storage) + bytes([flags])


write("put_header", "layout_c.bin", layout([3, 4], [4, 1], 0, 12))
write("put_header", "layout_transposed.bin", layout([4, 3], [1, 4], 0, 12))
write("put_header", "layout_broadcast.bin", layout([2, 5], [0, 1], 3, 8))
write("put_header", "layout_negative.bin", layout([3, 2], [-2, 1], 4, 6))
write("put_header", "layout_scalar.bin", layout([], [], 5, 6))
write("put_header", "layout_overflow.bin",
      layout([2, 1 << 62], [1 << 62, 1], 0, (1 << 63) - 1))

# rpc: method index, flags, length-prefixed request messages. The indexes
# follow the Method enum in rpc_fuzz.cc.
PUT, CREATE, INFO, LIST, DELETE, DETACH, TO, FETCH, STATS, EMPTY_CACHE, SHM = (
    range(11))


def rpc(method, *messages, flags=0):
    return bytes([method, flags]) + b"".join(
        prefixed(m.SerializeToString()) for m in messages)


data = pb.PutRequest(data=np.arange(6, dtype=np.float32).tobytes())
write("rpc", "put_raw.bin", rpc(PUT, pb.PutRequest(header=raw), data))
write("rpc", "put_npy.bin",
      rpc(PUT, pb.PutRequest(header=pb.PutHeader(format=pb.FORMAT_NPY)),
          pb.PutRequest(data=NPY["be_i2_fortran.npy"])))
write("rpc", "put_cancelled.bin",
      rpc(PUT, pb.PutRequest(header=raw), flags=1))
write("rpc", "create_eye.bin",
      rpc(CREATE, pb.CreateRequest(dtype=pb.DTYPE_FLOAT64, shape=[3, 3],
                                   eye=pb.Empty(), requires_grad=True)))
write("rpc", "create_values.bin",
      rpc(CREATE, pb.CreateRequest(dtype=pb.DTYPE_INT8, shape=[2],
                                   values=pb.Literal(int_values=[1, -300]))))
write("rpc", "create_rand.bin",
      rpc(CREATE, pb.CreateRequest(dtype=pb.DTYPE_BFLOAT16, shape=[4],
                                   rand_seed=7)))
write("rpc", "info_fixture.bin", rpc(INFO, pb.InfoRequest(ref="#0")))
write("rpc", "info_name.bin", rpc(INFO, pb.InfoRequest(ref="grad")))
write("rpc", "list.bin", rpc(LIST, pb.ListRequest(page_size=2)))
write("rpc", "delete_fixture.bin", rpc(DELETE, pb.DeleteRequest(refs=["#1"])))
write("rpc", "delete_missing.bin",
      rpc(DELETE, pb.DeleteRequest(refs=["#1", "x"])))
write("rpc", "detach.bin", rpc(DETACH, pb.DetachRequest(ref="#2", name="d")))
write("rpc", "to_f16.bin",
      rpc(TO, pb.ToRequest(ref="#3", dtype=pb.DTYPE_FLOAT16, copy=True)))
write("rpc", "fetch_npy.bin",
      rpc(FETCH, pb.FetchRequest(ref="#2", format=pb.FORMAT_NPY)))
write("rpc", "fetch_range.bin",
      rpc(FETCH, pb.FetchRequest(ref="grad", format=pb.FORMAT_RAW, force=True,
                                 offset=8, length=16, dtype=pb.DTYPE_INT32)))
write("rpc", "stats.bin", rpc(STATS, pb.StatsRequest()))
write("rpc", "empty_cache.bin",
      rpc(EMPTY_CACHE, pb.EmptyCacheRequest(device="cpu")))
write("rpc", "shm.bin",
      rpc(SHM, pb.OpenSharedMemoryRequest(name="tensorcast-x", size=4096)))

# shm: flags (bit 0 file, bits 1-3 the memfd's seals shrink/grow/write,
# bit 4 the token at the start, bit 5 the challenge left unwritten, bit 6 a
# 16 KiB quota, bit 7 a memfd without F_SEAL_SEAL), real size, size asked
# (zigzag), token, bytes at offset 0,
# then transfers (op byte: even write, odd read; offset, length as zigzag
# varints). See shm_fuzz.cc.
SHRINK, GROW, WRITE_SEAL, TOKEN_AT_START = 2, 4, 8, 16
NO_CHALLENGE, QUOTA, NO_SEAL_SEAL = 32, 64, 128
TOKEN = bytes(range(1, 33))


def shm(flags, real, asked, token=TOKEN, start=b"", ops=()):
    out = bytes([flags]) + varint(real) + zigzag(asked) + prefixed(token)
    out += prefixed(start)
    for write, offset, length in ops:
        out += bytes([0 if write else 1]) + zigzag(offset) + zigzag(length)
    return out


OPS = [(True, 4096, 100), (False, 4096, 100), (True, 0, 32), (False, 100, 8),
       (True, 8100, 92), (True, 8100, 93), (False, -1, 4)]
write("shm", "memfd_sealed.bin",
      shm(SHRINK | GROW | TOKEN_AT_START, 8192, 8192, ops=OPS))
write("shm", "file.bin", shm(1 | TOKEN_AT_START, 8192, 8192, ops=OPS))
write("shm", "memfd_unsealed.bin", shm(TOKEN_AT_START, 8192, 8192))
write("shm", "memfd_write_sealed.bin",
      shm(SHRINK | WRITE_SEAL | TOKEN_AT_START, 8192, 8192))
write("shm", "wrong_token.bin", shm(SHRINK | 1, 8192, 8192, start=b"x" * 64))
write("shm", "zero_token.bin",
      shm(SHRINK | TOKEN_AT_START, 8192, 8192, token=bytes(16)))
write("shm", "too_small.bin", shm(SHRINK | TOKEN_AT_START, 8192, 8193))
write("shm", "header_only.bin", shm(SHRINK | TOKEN_AT_START, 4096, 4096))
write("shm", "over_cap.bin", shm(SHRINK | TOKEN_AT_START, 40000, 40000))
write("shm", "memfd_open_to_seals.bin",
      shm(SHRINK | GROW | TOKEN_AT_START | NO_SEAL_SEAL, 8192, 8192))
write("shm", "no_challenge.bin",
      shm(SHRINK | TOKEN_AT_START | NO_CHALLENGE, 8192, 8192, ops=OPS))
write("shm", "file_no_challenge.bin",
      shm(1 | TOKEN_AT_START | NO_CHALLENGE, 8192, 8192, ops=OPS))
write("shm", "within_quota.bin",
      shm(SHRINK | TOKEN_AT_START | QUOTA, 8192, 8192, ops=OPS))
write("shm", "over_quota.bin",
      shm(SHRINK | TOKEN_AT_START | QUOTA, 30000, 30000))

# http: the representation's size (8 bytes, little-endian; an odd first
# byte keeps it under 1 MiB), then a request target and, after a newline,
# a Range header. See http_fuzz.cc.
def http(total, target, range_header=None):
    out = struct.pack("<q", total) + target
    return out if range_header is None else out + b"\n" + range_header


write("http", "download.bin",
      http(1000, b"/v1/tensors/w%2F1?dtype=float64&format=raw&cpu=1", b"bytes=100-199"))
write("http", "suffix.bin", http(1000, b"/v1/tensors/abc/info", b"bytes=-10"))
write("http", "open_end.bin", http(1000, b"/v1/tensors/abc?force", b"bytes=999-"))
write("http", "past_end.bin", http(1000, b"/v1/tensors/abc", b"bytes=1000-"))
write("http", "several.bin", http(1000, b"/v1/tensors/abc", b"bytes=0-1,5-6"))
write("http", "upload.bin",
      http(0, b"/v1/tensors?name=w&device=cpu&requires_grad=true&ttl=60"))
write("http", "stats.bin", http(0, b"/v1/stats"))
write("http", "bad_escape.bin", http(7, b"/v1/tensors/%zz%", b"bytes=x-"))
write("http", "huge.bin",
      http(2**62, b"/v1/tensors/x?a=1&a=2", b"bytes=99999999999999999999999-"))

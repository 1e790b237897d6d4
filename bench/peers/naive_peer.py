#!/usr/bin/env python3
"""The naive peer of the benchmark suite (bench/suite.py): the tensor server a
user writes today with grpcio. It holds torch tensors (NumPy arrays where
torch is absent) and answers tensorcast.bench.Peer (bench/peers/peer.proto)
with ``tensor.detach().cpu().numpy().tobytes()`` — cast first with
``.to(torch.float16)`` / ``astype(np.float16)`` when asked — either in one
message (FetchUnary, with the max message size raised) or streamed in 4 MiB
slices of those bytes (Fetch). A grpcio thread-pool server with the
tutorial's ``max_workers=10``.

The messages are real protobuf messages built from the same descriptor that
protoc would generate (see ``peer_messages``), so no generated code is needed
and the wire format is the C++ peer's.

    naive_peer.py --port-file=PATH --tensors=NAME:ELEMENTS[,...]

Serves on 127.0.0.1:0 (the port goes to PATH) until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import sys
import threading
from typing import Any, Iterator

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

try:  # the peer's point is the torch idiom; NumPy stands in without torch
    import torch  # type: ignore[import-not-found]
except ImportError:
    torch = None

MiB = 1 << 20
MAX_MESSAGE = 1 << 30  # FetchUnary answers 256 MiB in one message
SERVICE = "tensorcast.bench.Peer"


def peer_messages() -> tuple[type[Any], type[Any]]:
    """FetchRequest and Chunk of bench/peers/peer.proto, built at run time."""
    f = descriptor_pb2.FileDescriptorProto(name="bench/peers/peer.proto",
                                           package="tensorcast.bench", syntax="proto3")
    req = f.message_type.add(name="FetchRequest")
    T = descriptor_pb2.FieldDescriptorProto
    req.field.add(name="name", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    req.field.add(name="dtype", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    req.field.add(name="chunk_bytes", number=3, type=T.TYPE_INT64, label=T.LABEL_OPTIONAL)
    chunk = f.message_type.add(name="Chunk")
    chunk.field.add(name="data", number=1, type=T.TYPE_BYTES, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return (message_factory.GetMessageClass(
                pool.FindMessageTypeByName("tensorcast.bench.FetchRequest")),
            message_factory.GetMessageClass(
                pool.FindMessageTypeByName("tensorcast.bench.Chunk")))


FetchRequest, Chunk = peer_messages()


def make_tensor(elements: int) -> Any:
    # 0, 1, ... 2047, 0, 1, ...: exact in float16 (bench/suite.py uploads the
    # same values to tensorcast).
    arr = np.resize(np.arange(2048, dtype=np.float32), elements)
    return torch.from_numpy(arr) if torch is not None else arr


def to_bytes(tensor: Any, dtype: str) -> bytes:
    """What the user writes."""
    if torch is not None:
        t = tensor.detach().cpu()
        if dtype == "float16":
            t = t.to(torch.float16)
        return bytes(t.numpy().tobytes())
    if dtype == "float16":
        return bytes(tensor.astype(np.float16).tobytes())
    return bytes(tensor.tobytes())


def serve(port_file: str, tensors: dict[str, Any]) -> None:
    def lookup(request: Any, context: grpc.ServicerContext) -> bytes:
        tensor = tensors.get(request.name)
        if tensor is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such tensor")
        if request.dtype not in ("", "float32", "float16"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "dtype: float32 or float16")
        return to_bytes(tensor, request.dtype)

    def fetch_unary(request: Any, context: grpc.ServicerContext) -> Any:
        return Chunk(data=lookup(request, context))

    def fetch(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        data = lookup(request, context)
        step = request.chunk_bytes or 4 * MiB
        for start in range(0, len(data), step):
            yield Chunk(data=data[start:start + step])

    handlers = {
        "Fetch": grpc.unary_stream_rpc_method_handler(
            fetch, request_deserializer=FetchRequest.FromString,
            response_serializer=Chunk.SerializeToString),
        "FetchUnary": grpc.unary_unary_rpc_method_handler(
            fetch_unary, request_deserializer=FetchRequest.FromString,
            response_serializer=Chunk.SerializeToString),
    }
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=10),
                         options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                  ("grpc.max_receive_message_length", MAX_MESSAGE)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, port_file)
    stop.wait()
    server.stop(grace=2).wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--tensors", required=True, help="NAME:ELEMENTS[,...]")
    args = parser.parse_args()
    tensors: dict[str, Any] = {}
    for item in args.tensors.split(","):
        name, _, count = item.partition(":")
        tensors[name] = make_tensor(int(count))
    serve(args.port_file, tensors)
    return 0


if __name__ == "__main__":
    sys.exit(main())

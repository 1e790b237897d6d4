"""Generated protobuf and gRPC code for tensorcast.v1 (see generate_stubs.py).

The ``*_pb2*.py`` files beside this one are generated from
``proto/tensorcast/v1/*.proto``; do not edit them by hand.
"""

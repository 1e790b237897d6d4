"""Exceptions: gRPC status codes turned into Python exceptions.

Errors that mirror PyTorch keep PyTorch's exception type and text exactly
(``RuntimeError: Can't call numpy() on Tensor that requires grad...``); the
classes that carry them also derive from the TensorcastError subclass of
their status code, so either ``except`` clause catches them.
"""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = [
    "TensorcastError", "NotFoundError", "InvalidArgumentError",
    "AlreadyExistsError", "FailedPreconditionError", "OutOfMemoryError",
    "UnavailableError", "DeadlineExceededError", "CancelledError",
    "UnauthenticatedError", "PermissionDeniedError", "OutOfRangeError",
    "InternalError", "from_rpc_error",
]


class TensorcastError(Exception):
    """Base class of every error the server reports.

    ``code`` is the gRPC status code (``grpc.StatusCode``) and ``details``
    the server's message; ``str(error)`` is that message.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code


class NotFoundError(TensorcastError, LookupError):
    """NOT_FOUND: no tensor has that handle or name."""
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgumentError(TensorcastError, ValueError):
    """INVALID_ARGUMENT: a bad dtype, shape, byte count or request."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class AlreadyExistsError(TensorcastError):
    """ALREADY_EXISTS: the name is taken."""
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(TensorcastError, RuntimeError):
    """FAILED_PRECONDITION: e.g. a device this server does not have."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfMemoryError(TensorcastError, RuntimeError):
    """RESOURCE_EXHAUSTED: the device's pool is at its memory limit (the
    counterpart of ``torch.OutOfMemoryError``)."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(TensorcastError, ConnectionError):
    """UNAVAILABLE: the server cannot be reached, or is shutting down."""
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(TensorcastError, TimeoutError):
    """DEADLINE_EXCEEDED: the call took longer than its timeout."""
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(TensorcastError):
    """CANCELLED: the call was cancelled."""
    code = grpc.StatusCode.CANCELLED


class UnauthenticatedError(TensorcastError, PermissionError):
    """UNAUTHENTICATED: no valid token."""
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(TensorcastError, PermissionError):
    """PERMISSION_DENIED: the token does not allow this."""
    code = grpc.StatusCode.PERMISSION_DENIED


class OutOfRangeError(TensorcastError, IndexError):
    """OUT_OF_RANGE: e.g. a fetch offset past the end."""
    code = grpc.StatusCode.OUT_OF_RANGE


class InternalError(TensorcastError):
    """INTERNAL or another unexpected status."""
    code = grpc.StatusCode.INTERNAL


# PyTorch-mirroring errors: PyTorch's type and text, plus the status class.
# They print as PyTorch's do ("RuntimeError: Can't call numpy() on ...").
class _NumpyRequiresGradError(FailedPreconditionError):  # a RuntimeError
    pass


class _NumpyDeviceError(FailedPreconditionError, TypeError):
    pass


class _RequiresGradDTypeError(InvalidArgumentError, RuntimeError):
    pass


def _reduce_as_builtin(self: TensorcastError) -> tuple[type, tuple[str]]:
    return _SHOWN[type(self)], (self.details,)


_SHOWN: dict[type, type] = {_NumpyRequiresGradError: RuntimeError,
                            _NumpyDeviceError: TypeError,
                            _RequiresGradDTypeError: RuntimeError}
for _cls, _shown in _SHOWN.items():
    _cls.__module__ = "builtins"
    _cls.__qualname__ = _shown.__name__
    _cls.__reduce__ = _reduce_as_builtin  # type: ignore[method-assign,assignment]


_BY_CODE: dict[grpc.StatusCode, type[TensorcastError]] = {
    cls.code: cls for cls in (
        NotFoundError, InvalidArgumentError, AlreadyExistsError,
        FailedPreconditionError, OutOfMemoryError, UnavailableError,
        DeadlineExceededError, CancelledError, UnauthenticatedError,
        PermissionDeniedError, OutOfRangeError, InternalError)
}

_REQUIRES_GRAD_NUMPY = "Can't call numpy() on Tensor that requires grad"
_DEVICE_NUMPY = "can't convert "
_DEVICE_NUMPY_END = "device type tensor to numpy"
_REQUIRES_GRAD_DTYPE = "Only Tensors of floating point and complex dtype can require gradients"


def from_status(code: grpc.StatusCode, details: str,
                target: Optional[str] = None) -> TensorcastError:
    """The exception for a status code and message."""
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        if details.startswith(_REQUIRES_GRAD_NUMPY):
            return _NumpyRequiresGradError(details)
        if details.startswith(_DEVICE_NUMPY) and _DEVICE_NUMPY_END in details:
            return _NumpyDeviceError(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(
            _REQUIRES_GRAD_DTYPE):
        return _RequiresGradDTypeError(details)
    if code == grpc.StatusCode.UNAVAILABLE and target is not None:
        details = f"tensorcast server at {target} is unavailable: {details}"
    cls = _BY_CODE.get(code)
    if cls is None:
        return TensorcastError(details, code)
    return cls(details)


def from_rpc_error(error: grpc.RpcError, target: Optional[str] = None) -> TensorcastError:
    """Translate a ``grpc.RpcError`` (sync or aio) into a TensorcastError."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return from_status(code or grpc.StatusCode.UNKNOWN, details or str(code), target)

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_UINT32: _ClassVar[DType]
    DTYPE_UINT64: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_COMPLEX64: _ClassVar[DType]
    DTYPE_COMPLEX128: _ClassVar[DType]

class Format(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FORMAT_UNSPECIFIED: _ClassVar[Format]
    FORMAT_NPY: _ClassVar[Format]
    FORMAT_RAW: _ClassVar[Format]
DTYPE_UNSPECIFIED: DType
DTYPE_BOOL: DType
DTYPE_UINT8: DType
DTYPE_INT8: DType
DTYPE_INT16: DType
DTYPE_INT32: DType
DTYPE_INT64: DType
DTYPE_UINT16: DType
DTYPE_UINT32: DType
DTYPE_UINT64: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_COMPLEX64: DType
DTYPE_COMPLEX128: DType
FORMAT_UNSPECIFIED: Format
FORMAT_NPY: Format
FORMAT_RAW: Format

class TensorInfo(_message.Message):
    __slots__ = ("handle", "name", "dtype", "shape", "strides", "storage_offset", "device", "requires_grad", "nbytes", "numel", "is_contiguous", "storage_bytes", "expires_at_unix_s", "created_at_unix_s", "node")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    STRIDES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    NUMEL_FIELD_NUMBER: _ClassVar[int]
    IS_CONTIGUOUS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    name: str
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    strides: _containers.RepeatedScalarFieldContainer[int]
    storage_offset: int
    device: str
    requires_grad: bool
    nbytes: int
    numel: int
    is_contiguous: bool
    storage_bytes: int
    expires_at_unix_s: int
    created_at_unix_s: int
    node: str
    def __init__(self, handle: _Optional[str] = ..., name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., strides: _Optional[_Iterable[int]] = ..., storage_offset: _Optional[int] = ..., device: _Optional[str] = ..., requires_grad: _Optional[bool] = ..., nbytes: _Optional[int] = ..., numel: _Optional[int] = ..., is_contiguous: _Optional[bool] = ..., storage_bytes: _Optional[int] = ..., expires_at_unix_s: _Optional[int] = ..., created_at_unix_s: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class PutHeader(_message.Message):
    __slots__ = ("dtype", "shape", "device", "requires_grad", "name", "ttl_seconds", "format", "total_bytes", "shm_region", "shm_offset", "shm_bytes")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHM_REGION_FIELD_NUMBER: _ClassVar[int]
    SHM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHM_BYTES_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    device: str
    requires_grad: bool
    name: str
    ttl_seconds: int
    format: Format
    total_bytes: int
    shm_region: str
    shm_offset: int
    shm_bytes: int
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., device: _Optional[str] = ..., requires_grad: _Optional[bool] = ..., name: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., format: _Optional[_Union[Format, str]] = ..., total_bytes: _Optional[int] = ..., shm_region: _Optional[str] = ..., shm_offset: _Optional[int] = ..., shm_bytes: _Optional[int] = ...) -> None: ...

class OpenSharedMemoryRequest(_message.Message):
    __slots__ = ("name", "size", "token", "memfd_pid", "memfd_fd", "cuda_ipc_handle", "cuda_pci_bus_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MEMFD_PID_FIELD_NUMBER: _ClassVar[int]
    MEMFD_FD_FIELD_NUMBER: _ClassVar[int]
    CUDA_IPC_HANDLE_FIELD_NUMBER: _ClassVar[int]
    CUDA_PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    token: bytes
    memfd_pid: int
    memfd_fd: int
    cuda_ipc_handle: bytes
    cuda_pci_bus_id: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., token: _Optional[bytes] = ..., memfd_pid: _Optional[int] = ..., memfd_fd: _Optional[int] = ..., cuda_ipc_handle: _Optional[bytes] = ..., cuda_pci_bus_id: _Optional[str] = ...) -> None: ...

class SharedMemoryEvent(_message.Message):
    __slots__ = ("region", "size", "mapped", "device", "data_offset", "challenge")
    REGION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MAPPED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DATA_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    region: str
    size: int
    mapped: bool
    device: str
    data_offset: int
    challenge: bytes
    def __init__(self, region: _Optional[str] = ..., size: _Optional[int] = ..., mapped: _Optional[bool] = ..., device: _Optional[str] = ..., data_offset: _Optional[int] = ..., challenge: _Optional[bytes] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: PutHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[PutHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ...) -> None: ...

class Literal(_message.Message):
    __slots__ = ("float_values", "int_values", "uint_values", "bool_values", "complex_values")
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT_VALUES_FIELD_NUMBER: _ClassVar[int]
    UINT_VALUES_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    COMPLEX_VALUES_FIELD_NUMBER: _ClassVar[int]
    float_values: _containers.RepeatedScalarFieldContainer[float]
    int_values: _containers.RepeatedScalarFieldContainer[int]
    uint_values: _containers.RepeatedScalarFieldContainer[int]
    bool_values: _containers.RepeatedScalarFieldContainer[bool]
    complex_values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, float_values: _Optional[_Iterable[float]] = ..., int_values: _Optional[_Iterable[int]] = ..., uint_values: _Optional[_Iterable[int]] = ..., bool_values: _Optional[_Iterable[bool]] = ..., complex_values: _Optional[_Iterable[float]] = ...) -> None: ...

class Arange(_message.Message):
    __slots__ = ("start", "step")
    START_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    start: float
    step: float
    def __init__(self, start: _Optional[float] = ..., step: _Optional[float] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("dtype", "shape", "device", "requires_grad", "name", "ttl_seconds", "zeros", "ones", "full", "arange", "eye", "rand_seed", "values")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ZEROS_FIELD_NUMBER: _ClassVar[int]
    ONES_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    ARANGE_FIELD_NUMBER: _ClassVar[int]
    EYE_FIELD_NUMBER: _ClassVar[int]
    RAND_SEED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    device: str
    requires_grad: bool
    name: str
    ttl_seconds: int
    zeros: Empty
    ones: Empty
    full: float
    arange: Arange
    eye: Empty
    rand_seed: int
    values: Literal
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., device: _Optional[str] = ..., requires_grad: _Optional[bool] = ..., name: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., zeros: _Optional[_Union[Empty, _Mapping]] = ..., ones: _Optional[_Union[Empty, _Mapping]] = ..., full: _Optional[float] = ..., arange: _Optional[_Union[Arange, _Mapping]] = ..., eye: _Optional[_Union[Empty, _Mapping]] = ..., rand_seed: _Optional[int] = ..., values: _Optional[_Union[Literal, _Mapping]] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "name_prefix")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    name_prefix: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("tensors", "next_page_token")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    next_page_token: str
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class DetachRequest(_message.Message):
    __slots__ = ("ref", "name", "ttl_seconds")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    name: str
    ttl_seconds: int
    def __init__(self, ref: _Optional[str] = ..., name: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class DetachResponse(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ...) -> None: ...

class ToRequest(_message.Message):
    __slots__ = ("ref", "device", "dtype", "copy", "name", "ttl_seconds")
    REF_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    device: str
    dtype: DType
    copy: bool
    name: str
    ttl_seconds: int
    def __init__(self, ref: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., copy: _Optional[bool] = ..., name: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ToResponse(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("ref", "format", "dtype", "detach", "cpu", "force", "offset", "length", "chunk_bytes", "shm_region", "shm_offset")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHM_REGION_FIELD_NUMBER: _ClassVar[int]
    SHM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ref: str
    format: Format
    dtype: DType
    detach: bool
    cpu: bool
    force: bool
    offset: int
    length: int
    chunk_bytes: int
    shm_region: str
    shm_offset: int
    def __init__(self, ref: _Optional[str] = ..., format: _Optional[_Union[Format, str]] = ..., dtype: _Optional[_Union[DType, str]] = ..., detach: _Optional[bool] = ..., cpu: _Optional[bool] = ..., force: _Optional[bool] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., shm_region: _Optional[str] = ..., shm_offset: _Optional[int] = ...) -> None: ...

class FetchHeader(_message.Message):
    __slots__ = ("tensor", "format", "total_bytes", "offset", "length")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    format: Format
    total_bytes: int
    offset: int
    length: int
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ..., format: _Optional[_Union[Format, str]] = ..., total_bytes: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("data", "header")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    header: FetchHeader
    def __init__(self, data: _Optional[bytes] = ..., header: _Optional[_Union[FetchHeader, _Mapping]] = ...) -> None: ...

class DeviceStats(_message.Message):
    __slots__ = ("device", "allocated_bytes", "reserved_bytes", "peak_allocated_bytes", "peak_reserved_bytes", "limit_bytes", "alloc_count", "free_count", "cache_hits", "cache_misses", "segment_count", "tensors", "description", "free_bytes")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOC_COUNT_FIELD_NUMBER: _ClassVar[int]
    FREE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    device: str
    allocated_bytes: int
    reserved_bytes: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    limit_bytes: int
    alloc_count: int
    free_count: int
    cache_hits: int
    cache_misses: int
    segment_count: int
    tensors: int
    description: str
    free_bytes: int
    def __init__(self, device: _Optional[str] = ..., allocated_bytes: _Optional[int] = ..., reserved_bytes: _Optional[int] = ..., peak_allocated_bytes: _Optional[int] = ..., peak_reserved_bytes: _Optional[int] = ..., limit_bytes: _Optional[int] = ..., alloc_count: _Optional[int] = ..., free_count: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., segment_count: _Optional[int] = ..., tensors: _Optional[int] = ..., description: _Optional[str] = ..., free_bytes: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TenantStats(_message.Message):
    __slots__ = ("tenant", "bytes", "tensors", "active_streams", "quota_bytes", "max_tensors", "max_streams")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_STREAMS_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TENSORS_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    bytes: int
    tensors: int
    active_streams: int
    quota_bytes: int
    max_tensors: int
    max_streams: int
    def __init__(self, tenant: _Optional[str] = ..., bytes: _Optional[int] = ..., tensors: _Optional[int] = ..., active_streams: _Optional[int] = ..., quota_bytes: _Optional[int] = ..., max_tensors: _Optional[int] = ..., max_streams: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("devices", "tensors", "active_streams", "version", "cuda_available", "cuda_status", "tenant", "tenants")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_STREAMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CUDA_STATUS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceStats]
    tensors: int
    active_streams: int
    version: str
    cuda_available: bool
    cuda_status: str
    tenant: TenantStats
    tenants: _containers.RepeatedCompositeFieldContainer[TenantStats]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceStats, _Mapping]]] = ..., tensors: _Optional[int] = ..., active_streams: _Optional[int] = ..., version: _Optional[str] = ..., cuda_available: _Optional[bool] = ..., cuda_status: _Optional[str] = ..., tenant: _Optional[_Union[TenantStats, _Mapping]] = ..., tenants: _Optional[_Iterable[_Union[TenantStats, _Mapping]]] = ...) -> None: ...

class EmptyCacheRequest(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: str
    def __init__(self, device: _Optional[str] = ...) -> None: ...

class EmptyCacheResponse(_message.Message):
    __slots__ = ("released_bytes",)
    RELEASED_BYTES_FIELD_NUMBER: _ClassVar[int]
    released_bytes: int
    def __init__(self, released_bytes: _Optional[int] = ...) -> None: ...

class ClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterMember(_message.Message):
    __slots__ = ("node_id", "address", "devices", "healthy", "error", "last_seen_unix_ms", "version", "self")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SELF_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    devices: _containers.RepeatedCompositeFieldContainer[DeviceStats]
    healthy: bool
    error: str
    last_seen_unix_ms: int
    version: str
    self: bool
    def __init__(self_, node_id: _Optional[str] = ..., address: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[DeviceStats, _Mapping]]] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ..., last_seen_unix_ms: _Optional[int] = ..., version: _Optional[str] = ..., self: _Optional[bool] = ...) -> None: ...

class ClusterResponse(_message.Message):
    __slots__ = ("node_id", "members")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    members: _containers.RepeatedCompositeFieldContainer[ClusterMember]
    def __init__(self, node_id: _Optional[str] = ..., members: _Optional[_Iterable[_Union[ClusterMember, _Mapping]]] = ...) -> None: ...

class CopyRequest(_message.Message):
    __slots__ = ("ref", "node", "name", "ttl_seconds", "device", "dtype")
    REF_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    node: str
    name: str
    ttl_seconds: int
    device: str
    dtype: DType
    def __init__(self, ref: _Optional[str] = ..., node: _Optional[str] = ..., name: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., device: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ...) -> None: ...

class CopyResponse(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorInfo
    def __init__(self, tensor: _Optional[_Union[TensorInfo, _Mapping]] = ...) -> None: ...

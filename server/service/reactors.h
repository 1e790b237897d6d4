// The reactors behind the streaming RPCs. Each works through the
// ServiceContext alone (admission, the drain count, the metrics, the
// shared-memory regions and workers), which must outlive it, and deletes
// itself when gRPC is done with the call (OnDone).
#ifndef TENSORCAST_SERVER_SERVICE_REACTORS_H_
#define TENSORCAST_SERVER_SERVICE_REACTORS_H_

#include <grpcpp/grpcpp.h>

#include "server/service/service_context.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

namespace tensorcast {

// Put (put_reactor.cc): a header, then the data messages (or a range of a
// shared-memory region); the tensor is stored when the client half-closes.
grpc::ServerReadReactor<grpc::ByteBuffer>* NewPutReactor(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    grpc::ByteBuffer* response);
// Fetch (fetch_reactor.cc): the tensor's bytes as a stream of chunks, or
// into a shared-memory region.
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewFetchReactor(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    const grpc::ByteBuffer* request);
// OpenSharedMemory (shm_session.cc): lends the server a region for as long
// as the call stays open.
grpc::ServerWriteReactor<v1::SharedMemoryEvent>* NewSharedMemorySession(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    const v1::OpenSharedMemoryRequest* request);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_REACTORS_H_

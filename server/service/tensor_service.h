// TensorServiceImpl: the tensorcast.v1.TensorService on gRPC's callback API.
// Unary RPCs finish through DefaultReactor(); Put, Fetch and
// OpenSharedMemory return the stream reactors (reactors.h), which delete
// themselves in OnDone. What every call shares -- admission, the drain, the
// calls in flight, the metrics, the shared-memory regions -- is the
// service's ServiceContext (service_context.h), which the reactors get in
// its stead. Tensors and memory live in the TensorStore and DeviceRegistry,
// which the caller owns and which must outlive the service (as must the
// Authenticator). Thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_TENSOR_SERVICE_H_
#define TENSORCAST_SERVER_SERVICE_TENSOR_SERVICE_H_

#include <utility>

#include "server/service/auth.h"
#include "server/service/service_context.h"
#include "server/store/device.h"
#include "server/store/tensor_store.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

namespace tensorcast {

// Every method but OpenSharedMemory is registered raw: its messages are
// grpc::ByteBuffers the service decodes and encodes itself. Put and Fetch
// do it field by field (proto/wire.h), so tensor bytes are read from and
// sent as gRPC's own slices, without a copy into a protobuf string; the
// unary methods check the caller's token and the request's size and fields
// before they parse it (so a stranger's request costs no parse at all, and
// anyone's a bounded one). The wire format is the ordinary v1 messages.
namespace internal {
using V1 = v1::TensorService;
using RawService = V1::WithRawCallbackMethod_Put<
    V1::WithRawCallbackMethod_Fetch<V1::WithRawCallbackMethod_Create<
        V1::WithRawCallbackMethod_Info<V1::WithRawCallbackMethod_List<
            V1::WithRawCallbackMethod_Delete<V1::WithRawCallbackMethod_Detach<
                V1::WithRawCallbackMethod_To<V1::WithRawCallbackMethod_Stats<
                    V1::WithRawCallbackMethod_EmptyCache<
                        V1::WithRawCallbackMethod_Copy<
                            V1::CallbackService>>>>>>>>>>>;
}  // namespace internal

class TensorServiceImpl final : public internal::RawService {
 public:
  // `auth` (which must outlive the service) says who each caller is.
  TensorServiceImpl(TensorStore* store, const DeviceRegistry* devices,
                    const Authenticator* auth, ServiceOptions options)
      : context_(store, devices, auth, std::move(options)) {}

  grpc::ServerReadReactor<grpc::ByteBuffer>* Put(
      grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detach(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* To(grpc::CallbackServerContext* ctx,
                               const grpc::ByteBuffer* request,
                               grpc::ByteBuffer* response) override;
  // A v1.FetchRequest in, a stream of v1.FetchResponse messages out, each
  // encoded by hand around a slice that references the chunk's bytes.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Fetch(
      grpc::CallbackServerContext* ctx,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* EmptyCache(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<v1::SharedMemoryEvent>* OpenSharedMemory(
      grpc::CallbackServerContext* ctx,
      const v1::OpenSharedMemoryRequest* request) override;
  // server/cluster/cluster_rpcs.cc.
  grpc::ServerUnaryReactor* Cluster(grpc::CallbackServerContext* ctx,
                                    const v1::ClusterRequest* request,
                                    v1::ClusterResponse* response) override;
  grpc::ServerUnaryReactor* Copy(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  // The state every call shares; the HTTP data plane and the server's
  // drain and /metrics work through it too.
  ServiceContext& context() { return context_; }
  const ServiceContext& context() const { return context_; }

 private:
  ServiceContext context_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_TENSOR_SERVICE_H_

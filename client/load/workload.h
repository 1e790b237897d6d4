// Workload: the server-side state a load scenario needs and the requests it
// sends. Setup() creates the source tensor (fetch, to, info) with the
// control client; Issue() sends one request on a worker's client; Discard()
// deletes what a request made (put and to make a tensor each, deleted
// outside the measured time); Teardown() deletes the source tensor. Every
// tensor the tool makes carries a TTL in duration mode, so even a killed
// run leaves nothing behind for long.
//
// Against a cluster the workload has one target per node: a source tensor
// made on that node (node pinning) and puts pinned to it; a request for
// target i goes to node i (the clients route by handle). Against one
// server there is one target, node "".
//
// With --shared-memory or --cuda-ipc, Setup() first opens one region on the
// control connection, so that a server that refuses them, a build without
// CUDA or a GPU this process cannot see stops the run before anything is
// made (--cuda-ipc checks the GPU before it asks the server).
//
// Thread-safe after Setup(): any number of workers may Issue() and Discard()
// at once. Teardown() once, after the workers have finished.
#ifndef TENSORCAST_CLIENT_LOAD_WORKLOAD_H_
#define TENSORCAST_CLIENT_LOAD_WORKLOAD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/cpp/client.h"
#include "client/cpp/cuda_ipc_region.h"
#include "client/cpp/shared_memory.h"
#include "client/load/options.h"

namespace tensorcast::load {

struct Outcome {
  absl::Status status;
  int64_t bytes = 0;    // payload moved; 0 on failure
  std::string created;  // a tensor to Discard(), if any
};

class Workload {
 public:
  // `nodes`: the cluster's node ids to work on ({} = one server).
  static absl::StatusOr<std::unique_ptr<Workload>> Setup(
      Client& control, const LoadOptions& options,
      const std::vector<std::string>& nodes = {});
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // One request on target `target` (0 <= target < targets()). A set
  // `stop` cancels a stream in progress (CANCELLED).
  Outcome Issue(RequestKind kind, Client& client, int target,
                const std::atomic<bool>& stop) const;
  // Deletes outcome.created, if any; a failure is counted (orphans()).
  void Discard(Client& client, const Outcome& outcome);
  // Deletes the source tensors and gives back the regions lent.
  // Returns the first failure.
  absl::Status Teardown(Client& control);

  // Tensors a Discard() failed to delete (left to their TTL).
  int64_t orphans() const { return orphans_.load(); }
  int targets() const { return static_cast<int>(targets_.size()); }
  // The node of each target ("" = one server).
  const std::string& node(int target) const { return targets_[target].node; }
  // The source tensors' handles, comma-separated ("" when none are left).
  std::string source_handles() const;
  // "fetch as npy cast to float16 after .cpu() -- 1 MiB float32 [262144]
  // on cuda:0".
  std::string Describe() const;

 private:
  explicit Workload(const LoadOptions& options);

  // Constant after Setup().
  const LoadOptions options_;
  v1::DType to_target_ = v1::DTYPE_UNSPECIFIED;  // `to` scenario
  int64_t ttl_seconds_ = 0;
  struct Target {
    std::string node;    // "" = one server
    std::string source;  // the tensor fetch, to and info work on
  };
  std::vector<Target> targets_;  // at least one
  std::string payload_;          // what put uploads
  // detach and cpu set where the source tensor needs them (unless
  // --fetch-as-is), as a user's t.detach().cpu().numpy() would.
  FetchOptions fetch_;
  std::atomic<int64_t> orphans_{0};

  // --shared-memory and --cuda-ipc: regions lent by each connection (a
  // region is valid only on the connection that opened it), reused across
  // requests; each is held by one request at a time (TakeRegion hands it
  // out of the free list, GiveRegion puts it back when that request has
  // ended), so there are as many as requests in flight: one per worker in
  // the closed loop. A region holds a fetch's output at the start of its
  // data and, for put, the payload put_offset_ past it (copied in once,
  // when it is opened), so a fetch -- even one cut short, whose copy the
  // server may still be finishing -- never writes over a put's bytes.
  struct Region {
    std::unique_ptr<SharedMemory> host;     // --shared-memory
    std::unique_ptr<CudaIpcRegion> device;  // --cuda-ipc
    const std::string& id() const {
      return host != nullptr ? host->region() : device->region();
    }
    int64_t offset() const {
      return host != nullptr ? host->offset() : device->offset();
    }
  };
  absl::StatusOr<Region> OpenRegion(Client& client) const;
  absl::StatusOr<Region> TakeRegion(Client& client) const;
  void GiveRegion(Client& client, Region region) const;
  int64_t put_offset_ = 0;
  int64_t region_bytes_ = 0;
  mutable absl::Mutex regions_mu_;
  mutable absl::flat_hash_map<Client*, std::vector<Region>> regions_
      ABSL_GUARDED_BY(regions_mu_);
};

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_WORKLOAD_H_

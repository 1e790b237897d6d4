// WorkerPool: a fixed number of threads that run tasks in the order they
// were queued. For work that must not hold gRPC's callback threads, which
// every call of every tenant needs: the shared-memory copies run here, in
// bounded pieces -- a task with more to do queues its next piece behind
// the others, so transfers take turns and none holds a thread for long.
//
// Destruction runs the tasks still queued (and any they queue), then joins
// the threads.
//
// Thread-safe.
#ifndef TENSORCAST_SERVER_CORE_WORKER_POOL_H_
#define TENSORCAST_SERVER_CORE_WORKER_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tensorcast {

class WorkerPool {
 public:
  // `threads` at least 1.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task` behind those already queued.
  void Run(std::function<void()> task);
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CORE_WORKER_POOL_H_

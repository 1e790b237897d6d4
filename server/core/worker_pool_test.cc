#include "server/core/worker_pool.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tensorcast {
namespace {

TEST(WorkerPoolTest, RunsTasksInOrderAndTakesTurns) {
  std::mutex mu;
  std::string order;
  WorkerPool* running = nullptr;
  // Two transfers of three pieces each: each piece queues the next behind
  // whatever is queued, so they alternate.
  std::function<void(char, int)> piece = [&](char who, int left) {
    {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(who);
    }
    if (left > 1) running->Run([&piece, who, left] { piece(who, left - 1); });
  };
  std::atomic<bool> go{false};
  {
    WorkerPool pool(1);
    running = &pool;
    EXPECT_EQ(pool.threads(), 1);
    pool.Run([&] {  // holds the one thread until both are queued
      while (!go.load()) std::this_thread::yield();
    });
    pool.Run([&] { piece('a', 3); });
    pool.Run([&] { piece('b', 3); });
    go.store(true);
    // The destructor runs what is queued, and what that queues.
  }
  EXPECT_EQ(order, "ababab");
}

TEST(WorkerPoolTest, ThreadsRunAtOnce) {
  WorkerPool pool(4);
  EXPECT_EQ(pool.threads(), 4);
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::atomic<int> done{0};
  for (int i = 0; i < 4; ++i) {
    pool.Run([&] {
      const int now = running.fetch_add(1) + 1;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      const auto until =
          std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (most.load() < 4 && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
      running.fetch_sub(1);
      done.fetch_add(1);
    });
  }
  while (done.load() < 4) std::this_thread::yield();
  EXPECT_EQ(most.load(), 4);
  EXPECT_EQ(WorkerPool(0).threads(), 1);  // at least one
}

}  // namespace
}  // namespace tensorcast

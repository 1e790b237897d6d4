// The fuzz targets' entry functions. Each fuzzer binary (fuzzer_main.cc,
// built with TENSORCAST_FUZZ=ON and clang) is LLVMFuzzerTestOneInput around
// one of them; regression_test.cc feeds them the saved crash inputs and the
// seed corpus in the ordinary build. An entry returns 0, and aborts (through
// FUZZ_CHECK) when an invariant fails.
#ifndef TENSORCAST_TESTS_FUZZ_FUZZ_TARGETS_H_
#define TENSORCAST_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace tensorcast::fuzz {

// ParseNpyHeader on the input, and on prefixes and re-encodings of it.
int FuzzNpy(const uint8_t* data, size_t size);
// A PutHeader (binary proto) and data through PutSpecFromProto and PutSink,
// or shapes, strides and offsets through the layout math of shape.h.
int FuzzPutHeader(const uint8_t* data, size_t size);
// One RPC of TensorService, its request messages from the input, sent to a
// TensorcastServer started once in this process.
int FuzzRpc(const uint8_t* data, size_t size);
// Stops the server FuzzRpc started, if any (for tests; fuzzers never do).
void ShutdownRpcFuzzer();
// The shared-memory handshake and transfers (SharedMemoryRegistry) on a
// memfd or file of this process with fuzz-chosen contents, token, size,
// seals and offsets.
int FuzzSharedMemory(const uint8_t* data, size_t size);
// The HTTP data plane's request target, query and Range parsing
// (server/http/http_parse.h) on fuzz-chosen strings and sizes.
int FuzzHttpRequest(const uint8_t* data, size_t size);

}  // namespace tensorcast::fuzz

// Not assert(): it must hold in release builds too.
#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

#endif  // TENSORCAST_TESTS_FUZZ_FUZZ_TARGETS_H_

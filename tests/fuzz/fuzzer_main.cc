// libFuzzer's entry point around one of fuzz_targets.h's functions, chosen
// at build time: -DTENSORCAST_FUZZ_ENTRY=FuzzNpy (see CMakeLists.txt).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tensorcast::fuzz::TENSORCAST_FUZZ_ENTRY(data, size);
}

#include "server/memory/memory_resource.h"

namespace tensorcast {

MemoryResource::~MemoryResource() = default;

}  // namespace tensorcast

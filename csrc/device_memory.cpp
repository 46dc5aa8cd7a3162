// The CUDA caching allocator's peak allocation (torch.cuda.max_memory_allocated), which
// tch does not expose. Reached through c10's device-generic allocator interface, so the
// shim compiles against CPU-only headers; without a CUDA allocator it returns false.
#include <c10/core/Allocator.h>
#include <c10/core/CachingDeviceAllocator.h>

#include <cstdint>

extern "C" {

bool segzoo_cuda_peak_allocated(int device, int64_t* bytes) {
  try {
    auto* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    const auto stats = allocator->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    // Index 0 is the aggregate over the large and small pools.
    *bytes = stats.allocated_bytes[0].peak;
    return true;
  } catch (...) {
    return false;
  }
}
}

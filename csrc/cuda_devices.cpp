// GPU names for `segzoo env` (torch.cuda.get_device_name), which tch does not expose.
// Compiled only in the CUDA flavour.
#include <ATen/cuda/CUDAContext.h>

#include <cstring>

extern "C" {

// The name of cuda:`index` into `out` (`len` bytes); false when it cannot be read.
bool segzoo_cuda_device_name(int index, char* out, size_t len) {
  try {
    const auto* props = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index));
    std::strncpy(out, props->name, len - 1);
    out[len - 1] = '\0';
    return true;
  } catch (...) {
    return false;
  }
}
}

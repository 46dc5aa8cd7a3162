// Per-device autocast with a chosen dtype: tch exposes only the legacy CUDA/fp16
// switch, so segzoo calls these through FFI (src/train/amp.rs).
#include <ATen/autocast_mode.h>

extern "C" {

// device: 0 = CPU, 1 = CUDA; dtype: 0 = float16, 1 = bfloat16. Returns false on failure.
bool segzoo_autocast_set(int device, bool enabled, int dtype) {
  try {
    const auto dev = device == 1 ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(dev, enabled);
    if (enabled) {
      at::autocast::increment_nesting();
    } else if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    return true;
  } catch (...) {
    return false;
  }
}

bool segzoo_autocast_enabled(int device) {
  return at::autocast::is_autocast_enabled(device == 1 ? at::kCUDA : at::kCPU);
}
}

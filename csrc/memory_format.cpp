// Memory formats (NCHW contiguous or channels-last NHWC strides) for 4-D tensors: tch
// 0.24 has no memory-format API (its `contiguous()` is NCHW only), so segzoo calls
// these through FFI (src/models/memory_format.rs).
#include <ATen/ATen.h>

#include <cstdio>

extern "C" {

// fmt: 0 = contiguous, 1 = channels-last. A new tensor (owned by the caller) sharing
// t's storage when it already has that layout, or null on failure (the reason on stderr).
at::Tensor* segzoo_contiguous(at::Tensor* t, int fmt) {
  try {
    const auto format = fmt == 1 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    return new at::Tensor(t->contiguous(format));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segzoo_contiguous: %s\n", e.what());
    return nullptr;
  }
}

bool segzoo_is_channels_last(at::Tensor* t) {
  try {
    return t->is_contiguous(at::MemoryFormat::ChannelsLast);
  } catch (...) {
    return false;
  }
}
}

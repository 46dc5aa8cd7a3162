// ProcessGroupNCCL, libtorch's GPU collectives (torch.distributed's backend="nccl"), and
// the NCCL version it runs. Compiled only in the CUDA flavour (-DUSE_C10D_NCCL -DUSE_CUDA,
// with the CUDA, CCCL and NCCL headers of the pip wheels); libtorch_cuda has the symbols.
#include "c10d_common.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/NCCLUtils.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstring>

using segzoo_c10d::GroupHandle;
using segzoo_c10d::guarded;
using segzoo_c10d::StoreHandle;

extern "C" {

// A NCCL group over the store for this rank's GPU `device`, which becomes the calling
// thread's current device. Communicators are created at the first collective (lazily, as
// PyTorch does); `timeout_ms` bounds each collective (c10d's own watchdog then aborts).
void* segzoo_pg_nccl(void* s, int rank, int size, int device, int64_t timeout_ms) {
  return guarded(
      [&]() -> void* {
        c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = std::chrono::milliseconds(timeout_ms);
        auto store = static_cast<StoreHandle*>(s)->store;
        return new GroupHandle{c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts), device};
      },
      static_cast<void*>(nullptr));
}

// The NCCL library's version ("2.28.5"), as loaded at run time, into `out` (`len` bytes).
bool segzoo_nccl_version(char* out, size_t len) {
  return guarded(
      [&] {
        const std::string v = c10d::getNcclVersion();
        std::strncpy(out, v.c_str(), len - 1);
        out[len - 1] = '\0';
        return true;
      },
      false);
}
}

// What the c10d shim files share: the opaque handles Rust holds (a store, a process
// group, a work item) and the thread-local last error, which every entry point sets when
// it fails (C++ exceptions must not cross into Rust).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <c10/core/DeviceGuard.h>
#include <c10/util/Exception.h>

#include <exception>
#include <optional>
#include <string>

namespace segzoo_c10d {

struct StoreHandle {
  c10::intrusive_ptr<c10d::Store> store;
};

// `device`: the CUDA device of a NCCL group's collectives, -1 for gloo (CPU tensors).
struct GroupHandle {
  c10::intrusive_ptr<c10d::Backend> pg;
  int device = -1;
};

// A work remembers its group's device: waiting for it or polling it from a thread whose
// current device is another (the watchdog's, autograd's) must not touch that other
// device, which would create a stray context there or order the wrong stream.
struct WorkHandle {
  c10::intrusive_ptr<c10d::Work> work;
  int device = -1;
};

// Makes `device` (a CUDA index; -1: none) the calling thread's current device until it
// goes out of scope, as PyTorch's own NCCL watchdog does with a CUDAGuard. c10's
// device-generic guard, so that this header compiles against CPU-only headers.
class OnDevice {
 public:
  explicit OnDevice(int device) {
    if (device >= 0) {
      guard_.emplace(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device)));
    }
  }

 private:
  std::optional<c10::DeviceGuard> guard_;
};

inline std::string& last_error() {
  static thread_local std::string message;
  return message;
}

// Runs `f`, turning an exception into `fallback` and the thread's last error.
template <typename F, typename R>
R guarded(F&& f, R fallback) {
  try {
    return f();
  } catch (const c10::Error& e) {
    // Without the C++ frames libtorch appends: the message is for users.
    last_error() = e.what_without_backtrace();
  } catch (const std::exception& e) {
    last_error() = e.what();
  } catch (...) {
    last_error() = "unknown C++ exception";
  }
  return fallback;
}

inline std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown C++ exception";
  }
}

}  // namespace segzoo_c10d

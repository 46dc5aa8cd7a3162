// ProcessGroupGloo, libtorch's CPU collectives over TCP, as torch.distributed builds it
// for backend="gloo". Compiled with -DUSE_C10D_GLOO against Debian's gloo headers; the
// gloo symbols themselves come from libtorch_cpu.
#include "c10d_common.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <chrono>
#include <sstream>

using segzoo_c10d::GroupHandle;
using segzoo_c10d::guarded;
using segzoo_c10d::StoreHandle;

extern "C" {

// A gloo group of `size` ranks over the store. Its transport binds to the interfaces in
// `ifnames` (comma separated, GLOO_SOCKET_IFNAME's form) when given, else to the address
// `host` resolves to when given, else to this machine's hostname (loopback if it does not
// resolve). Blocks until every rank has connected, or `timeout_ms`; later collectives
// time out after `timeout_ms` too (segzoo_pg_set_timeout changes it).
void* segzoo_pg_gloo(void* s, int rank, int size, const char* ifnames, const char* host, int64_t timeout_ms,
                     int threads) {
  return guarded(
      [&]() -> void* {
        using c10d::ProcessGroupGloo;
        auto opts = ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
        if (ifnames != nullptr && ifnames[0] != '\0') {
          std::stringstream list(ifnames);
          for (std::string name; std::getline(list, name, ',');) {
            if (!name.empty()) {
              opts->devices.push_back(ProcessGroupGloo::createDeviceForInterface(name));
            }
          }
        } else if (host != nullptr && host[0] != '\0') {
          opts->devices.push_back(ProcessGroupGloo::createDeviceForHostname(host));
        } else {
          opts->devices.push_back(ProcessGroupGloo::createDefaultDevice());
        }
        opts->threads = threads;
        auto store = static_cast<StoreHandle*>(s)->store;
        return new GroupHandle{c10::make_intrusive<ProcessGroupGloo>(store, rank, size, opts)};
      },
      static_cast<void*>(nullptr));
}
}

// c10d's TCPStore, the rendezvous every rank of a job meets at (as torch.distributed's
// env:// init): rank 0 hosts it, the others connect; keys record who has joined. Used by
// src/distributed/c10d.rs.
#include "c10d_common.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>

using segzoo_c10d::guarded;
using segzoo_c10d::StoreHandle;

namespace {

c10d::Store& store_of(void* s) {
  return *static_cast<StoreHandle*>(s)->store;
}

}  // namespace

extern "C" {

const char* segzoo_c10d_last_error() {
  return segzoo_c10d::last_error().c_str();
}

// Host the store on `port` (0: any free port), every address of this machine. The port it
// listens on goes to `*bound`. Null on failure (the port is taken, …).
void* segzoo_store_host(uint16_t port, int64_t timeout_ms, uint16_t* bound) {
  return guarded(
      [&]() -> void* {
        c10d::TCPStoreOptions opts;
        opts.port = port;
        opts.isServer = true;
        // Who joined is checked by segzoo itself, which can then name the missing ranks.
        opts.waitWorkers = false;
        opts.timeout = std::chrono::milliseconds(timeout_ms);
        auto store = c10::make_intrusive<c10d::TCPStore>("0.0.0.0", opts);
        *bound = store->getPort();
        return new StoreHandle{store};
      },
      static_cast<void*>(nullptr));
}

// Connect to the store at host:port, retrying for up to `timeout_ms`.
void* segzoo_store_connect(const char* host, uint16_t port, int64_t timeout_ms) {
  return guarded(
      [&]() -> void* {
        c10d::TCPStoreOptions opts;
        opts.port = port;
        opts.isServer = false;
        opts.waitWorkers = false;
        opts.timeout = std::chrono::milliseconds(timeout_ms);
        return new StoreHandle{c10::make_intrusive<c10d::TCPStore>(host, opts)};
      },
      static_cast<void*>(nullptr));
}

// The same store seen through `prefix` (one namespace per process group).
void* segzoo_store_prefix(void* s, const char* prefix) {
  return guarded(
      [&]() -> void* {
        auto base = static_cast<StoreHandle*>(s)->store;
        return new StoreHandle{c10::make_intrusive<c10d::PrefixStore>(prefix, base)};
      },
      static_cast<void*>(nullptr));
}

void segzoo_store_free(void* s) {
  delete static_cast<StoreHandle*>(s);
}

bool segzoo_store_set(void* s, const char* key, const uint8_t* value, size_t len) {
  return guarded(
      [&] {
        store_of(s).set(key, std::vector<uint8_t>(value, value + len));
        return true;
      },
      false);
}

// The value of `key`, waiting for it up to the store's timeout, in a buffer the caller
// frees with segzoo_store_free_value. False on failure or timeout.
bool segzoo_store_get(void* s, const char* key, uint8_t** value, size_t* len) {
  return guarded(
      [&] {
        const auto v = store_of(s).get(key);
        *value = static_cast<uint8_t*>(std::malloc(v.size() + 1));
        std::memcpy(*value, v.data(), v.size());
        *len = v.size();
        return true;
      },
      false);
}

void segzoo_store_free_value(uint8_t* value) {
  std::free(value);
}

// Atomically adds `delta` to the integer at `key` (0 when absent); false on failure.
bool segzoo_store_add(void* s, const char* key, int64_t delta, int64_t* result) {
  return guarded(
      [&] {
        *result = store_of(s).add(key, delta);
        return true;
      },
      false);
}

// The limit of later waits (get) on the store, as init_process_group sets it to the
// collective timeout once the group is made: NCCL reads its unique id from the store at
// the first collective, which may come long after the rendezvous.
bool segzoo_store_set_timeout(void* s, int64_t timeout_ms) {
  return guarded(
      [&] {
        store_of(s).setTimeout(std::chrono::milliseconds(timeout_ms));
        return true;
      },
      false);
}

// The store's current limit on waits, in ms; -1 on failure.
int64_t segzoo_store_timeout_ms(void* s) {
  return guarded([&] { return static_cast<int64_t>(store_of(s).getTimeout().count()); }, static_cast<int64_t>(-1));
}

// 1: `key` exists, 0: not yet, -1: failure.
int segzoo_store_check(void* s, const char* key) {
  return guarded([&] { return store_of(s).check({key}) ? 1 : 0; }, -1);
}
}

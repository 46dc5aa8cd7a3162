// The collectives segzoo runs on a c10d process group (gloo or NCCL alike), each returning
// a work handle at once, as torch.distributed's async_op=True: the caller waits on it
// (blocking for gloo; ordering the current CUDA stream for NCCL) or polls it. Used by
// src/distributed/process_group.rs.
#include "c10d_common.h"

#include <chrono>

using segzoo_c10d::describe;
using segzoo_c10d::GroupHandle;
using segzoo_c10d::guarded;
using segzoo_c10d::OnDevice;
using segzoo_c10d::WorkHandle;

namespace {

c10d::Backend& pg_of(void* g) {
  return *static_cast<GroupHandle*>(g)->pg;
}

int device_of(void* g) {
  return static_cast<GroupHandle*>(g)->device;
}

void* wrap(void* g, c10::intrusive_ptr<c10d::Work> work) {
  return new WorkHandle{std::move(work), device_of(g)};
}

}  // namespace

extern "C" {

// In place: `t` ← its sum over the group.
void* segzoo_pg_allreduce(void* g, at::Tensor* t) {
  return guarded(
      [&] {
        std::vector<at::Tensor> ts{*t};
        return wrap(g, pg_of(g).allreduce(ts));
      },
      static_cast<void*>(nullptr));
}

// In place: `t` ← rank `root`'s `t`.
void* segzoo_pg_broadcast(void* g, at::Tensor* t, int root) {
  return guarded(
      [&] {
        std::vector<at::Tensor> ts{*t};
        c10d::BroadcastOptions opts;
        opts.rootRank = root;
        return wrap(g, pg_of(g).broadcast(ts, opts));
      },
      static_cast<void*>(nullptr));
}

// `out` (size × numel of `in`, flat) ← every rank's `in`, in rank order.
void* segzoo_pg_allgather(void* g, at::Tensor* out, at::Tensor* in) {
  return guarded(
      [&] {
        const auto size = pg_of(g).getSize();
        std::vector<std::vector<at::Tensor>> outs{out->view({size, -1}).unbind(0)};
        std::vector<at::Tensor> ins{in->view({-1})};
        return wrap(g, pg_of(g).allgather(outs, ins));
      },
      static_cast<void*>(nullptr));
}

void* segzoo_pg_barrier(void* g) {
  return guarded([&] { return wrap(g, pg_of(g).barrier()); }, static_cast<void*>(nullptr));
}

// Changes the limit of later collectives.
bool segzoo_pg_set_timeout(void* g, int64_t timeout_ms) {
  return guarded(
      [&] {
        pg_of(g).setTimeout(std::chrono::milliseconds(timeout_ms));
        return true;
      },
      false);
}

// Abandons the group's pending collectives (NCCL: ncclCommAbort); safe from any thread.
void segzoo_pg_abort(void* g) {
  guarded(
      [&] {
        pg_of(g).abort();
        return true;
      },
      false);
}

// Shuts the group down as torch.distributed.destroy_process_group does (NCCL: its
// communicators are destroyed cleanly), then frees the handle.
void segzoo_pg_free(void* g) {
  auto* handle = static_cast<GroupHandle*>(g);
  guarded(
      [&] {
        handle->pg->shutdown();
        return true;
      },
      false);
  delete handle;
}

// Waits for the work (gloo: until it has run; NCCL: the current stream of the work's
// device waits for it). False when it failed, with the reason as the last error.
bool segzoo_work_wait(void* w) {
  return guarded(
      [&] {
        auto* handle = static_cast<WorkHandle*>(w);
        OnDevice on(handle->device);
        return handle->work->wait();
      },
      false);
}

// 0: still running; 1: completed; -1: failed (the reason as the last error). Any thread:
// a NCCL work's event is queried on its own device.
int segzoo_work_poll(void* w) {
  return guarded(
      [&] {
        auto* handle = static_cast<WorkHandle*>(w);
        OnDevice on(handle->device);
        auto& work = handle->work;
        if (!work->isCompleted()) {
          return 0;
        }
        if (auto error = work->exception()) {
          segzoo_c10d::last_error() = describe(error);
          return -1;
        }
        return 1;
      },
      -1);
}

void segzoo_work_free(void* w) {
  delete static_cast<WorkHandle*>(w);
}
}

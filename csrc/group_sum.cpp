// A differentiable sum over the processes of a job, for SyncBatchNorm: the forward sums
// a tensor over the ranks, the backward sums its gradient over the ranks (the adjoint of
// an all-reduce is an all-reduce). tch has no autograd-function API, so this is libtorch's
// torch::autograd::Function; the collective itself stays in Rust (src/dist/group_sum.rs),
// reached through a callback that sums a tensor in place.
#include <torch/csrc/autograd/custom_function.h>

#include <cstdio>

extern "C" {
typedef void (*segzoo_sum_cb)(void* user, at::Tensor* t);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void sum_in_place(int64_t cb, int64_t user, at::Tensor& t) {
  reinterpret_cast<segzoo_sum_cb>(cb)(reinterpret_cast<void*>(user), &t);
}

struct GroupSum : public torch::autograd::Function<GroupSum> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t cb, int64_t user) {
    ctx->saved_data["cb"] = cb;
    ctx->saved_data["user"] = user;
    at::Tensor y = x.clone(at::MemoryFormat::Contiguous);
    sum_in_place(cb, user, y);
    return y;
  }

  // May run on an autograd engine thread (CUDA); the callback's collective must allow that.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor g = grads[0].clone(at::MemoryFormat::Contiguous);
    sum_in_place(ctx->saved_data["cb"].toInt(), ctx->saved_data["user"].toInt(), g);
    return {g, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// A new tensor (owned by the caller), or null on failure (the reason on stderr).
at::Tensor* segzoo_group_sum(at::Tensor* x, segzoo_sum_cb cb, void* user) {
  try {
    return new at::Tensor(GroupSum::apply(*x, reinterpret_cast<int64_t>(cb), reinterpret_cast<int64_t>(user)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segzoo_group_sum: %s\n", e.what());
    return nullptr;
  }
}
}

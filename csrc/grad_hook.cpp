// Per-parameter "gradient ready" hooks for overlapping the gradient all-reduce with
// backward, as DDP's reducer does: libtorch calls a post-accumulate-grad hook once a leaf's
// .grad holds this backward's contribution. tch exposes no hooks, so this sets one that
// calls back into Rust (src/dist/overlap.rs) with the parameter's index.
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>

extern "C" {
typedef void (*segzoo_ready_cb)(void* user, int64_t index);
}

namespace {

struct ReadyHook : public torch::autograd::PostAccumulateGradHook {
  ReadyHook(segzoo_ready_cb cb, void* user, int64_t index) : cb_(cb), user_(user), index_(index) {}
  void operator()(const torch::autograd::Variable& /*tensor*/) override { cb_(user_, index_); }

 private:
  segzoo_ready_cb cb_;
  void* user_;
  int64_t index_;
};

}  // namespace

extern "C" {

// Replaces the parameter's post-accumulate-grad hook; false on failure.
bool segzoo_set_grad_ready_hook(at::Tensor* param, segzoo_ready_cb cb, void* user, int64_t index) {
  try {
    torch::autograd::impl::set_post_acc_grad_hooks(*param, std::make_unique<ReadyHook>(cb, user, index));
    return true;
  } catch (...) {
    return false;
  }
}

bool segzoo_clear_grad_ready_hook(at::Tensor* param) {
  try {
    torch::autograd::impl::set_post_acc_grad_hooks(*param, nullptr);
    return true;
  } catch (...) {
    return false;
  }
}
}

#include "nextn/distributed/gradient_sync.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <optional>

#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(GradientSync* sync, size_t index) : sync_(sync), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    sync_->mark_ready(index_);
    return outputs;
  }

 private:
  GradientSync* sync_;
  size_t index_;
};

}  // namespace

struct GradientSync::Bucket {
  Communicator* group = nullptr;
  std::vector<size_t> params;  // indices into params_
  size_t waiting = 0;          // parameters not yet ready in this backward
  bool started = false;
  torch::Tensor flat;
  std::optional<PendingReduce> pending;
};

GradientSync::GradientSync(const std::vector<torch::Tensor>& replicated, Communicator* replicated_group,
                           const std::vector<torch::Tensor>& experts, Communicator* expert_group, int world_size,
                           int64_t bucket_bytes)
    : scale_(1.0 / static_cast<double>(world_size)) {
  NEXTN_CHECK(world_size >= 1 && bucket_bytes > 0, "GradientSync: bad world size or bucket size");
  auto add_buckets = [&](const std::vector<torch::Tensor>& tensors, Communicator* group) {
    int64_t bytes = 0;
    bool first = true;  // each group starts a bucket of its own
    for (auto it = tensors.rbegin(); it != tensors.rend(); ++it) {
      const int64_t param_bytes = it->numel() * static_cast<int64_t>(it->element_size());
      if (first || (bytes > 0 && bytes + param_bytes > bucket_bytes)) {
        buckets_.push_back(std::make_unique<Bucket>());
        buckets_.back()->group = group;
        bytes = 0;
        first = false;
      }
      bytes += param_bytes;
      buckets_.back()->params.push_back(params_.size());
      bucket_of_param_.push_back(buckets_.size() - 1);
      params_.push_back(*it);
    }
  };
  add_buckets(replicated, replicated_group);
  add_buckets(experts, expert_group);
  for (size_t i = 0; i < params_.size(); ++i) {
    NEXTN_CHECK(params_[i].requires_grad(), "GradientSync: parameter ", i, " does not require a gradient");
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<ReadyHook>(this, i)));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientSync::~GradientSync() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradientSync::arm() {
  armed_ = true;
  next_to_start_ = 0;
  started_in_backward_ = 0;
  for (auto& bucket : buckets_) {
    bucket->waiting = bucket->params.size();
    bucket->started = false;
    bucket->pending.reset();
  }
}

void GradientSync::mark_ready(size_t param_index) {
  if (!armed_) return;
  Bucket& bucket = *buckets_[bucket_of_param_[param_index]];
  if (bucket.waiting > 0) --bucket.waiting;
  start_ready_buckets();
}

void GradientSync::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_]->waiting == 0) {
    start(*buckets_[next_to_start_]);
    ++started_in_backward_;
    ++next_to_start_;
  }
}

void GradientSync::start(Bucket& bucket) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> pieces;
  for (size_t i : bucket.params) {
    const torch::Tensor& grad = params_[i].grad();
    pieces.push_back(grad.defined() ? grad.reshape({-1}) : torch::zeros({params_[i].numel()}, params_[i].options()));
  }
  bucket.flat = torch::cat(pieces);
  bucket.started = true;
  if (bucket.group != nullptr) bucket.pending.emplace(bucket.group->all_reduce_sum_async(bucket.flat));
}

void GradientSync::finish() {
  NEXTN_CHECK(armed_, "GradientSync::finish without arm");
  armed_ = false;
  torch::NoGradGuard no_grad;
  for (; next_to_start_ < buckets_.size(); ++next_to_start_) start(*buckets_[next_to_start_]);
  for (auto& bucket : buckets_) {
    if (bucket->pending) bucket->pending->wait();
    bucket->pending.reset();
    bucket->flat.mul_(scale_);
    int64_t offset = 0;
    for (size_t i : bucket->params) {
      torch::Tensor& param = params_[i];
      const int64_t n = param.numel();
      auto averaged = bucket->flat.narrow(0, offset, n).view(param.sizes());
      if (param.grad().defined()) {
        param.mutable_grad().copy_(averaged);
      } else {
        param.mutable_grad() = averaged.clone();
      }
      offset += n;
    }
    bucket->flat = torch::Tensor();
  }
}

}  // namespace nextn::dist

#include "nextn/training/adamw.h"

#include <cmath>

#include "nextn/util/error.h"

namespace nextn {

AdamW::AdamW(const std::vector<std::pair<std::string, torch::Tensor>>& named_params,
             const std::map<std::string, bool>& decay, AdamWOptions options)
    : options_(options) {
  for (const auto& [name, param] : named_params) {
    if (!param.requires_grad()) continue;
    auto it = decay.find(name);
    params_.push_back({name, param, it == decay.end() ? true : it->second,
                       torch::zeros_like(param, torch::MemoryFormat::Contiguous),
                       torch::zeros_like(param, torch::MemoryFormat::Contiguous)});
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bias_correction1;
  const double sqrt_bc2 = std::sqrt(bias_correction2);
  for (auto& p : params_) {
    const torch::Tensor& grad = p.param.grad();
    if (!grad.defined()) continue;
    if (p.decay && options_.weight_decay != 0.0) p.param.mul_(1.0 - lr * options_.weight_decay);
    p.exp_avg.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    p.exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    auto denom = (p.exp_avg_sq.sqrt() / sqrt_bc2).add_(options_.eps);
    p.param.addcdiv_(p.exp_avg, denom, -step_size);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) {
    if (p.param.grad().defined()) p.param.mutable_grad().zero_();
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : params_) {
    out.push_back({p.name + ".exp_avg", p.exp_avg});
    out.push_back({p.name + ".exp_avg_sq", p.exp_avg_sq});
  }
  return out;
}

namespace {

void load_state_tensor(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                       torch::Tensor& target) {
  auto it = tensors.find(name);
  NEXTN_CHECK(it != tensors.end(), "optimizer state lacks '", name, "'");
  NEXTN_CHECK(it->second.sizes() == target.sizes(), "optimizer state '", name, "' has shape ", it->second.sizes(),
              ", expected ", target.sizes());
  target.copy_(it->second);
}

}  // namespace

void AdamW::load_state(const std::map<std::string, torch::Tensor>& tensors, int64_t steps_taken) {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(tensors.size() == 2 * params_.size(), "optimizer state has ", tensors.size(),
              " tensors, expected ", 2 * params_.size(), " (two per trained parameter)");
  for (auto& p : params_) {
    load_state_tensor(tensors, p.name + ".exp_avg", p.exp_avg);
    load_state_tensor(tensors, p.name + ".exp_avg_sq", p.exp_avg_sq);
  }
  steps_ = steps_taken;
}

std::map<std::string, bool> default_weight_decay(const std::vector<std::pair<std::string, torch::Tensor>>& named_params,
                                                 bool decay_embedding) {
  std::map<std::string, bool> decay;
  for (const auto& [name, param] : named_params) {
    bool is_embedding = name.find("embed_tokens") != std::string::npos;
    decay[name] = param.dim() >= 2 && (!is_embedding || decay_embedding);
  }
  return decay;
}

namespace {

// Sum of squared gradient norms, accumulated in double on the gradients' device (one sync).
double squared_grad_norm(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().to(torch::kDouble).norm());
  }
  if (norms.empty()) return 0.0;
  return torch::stack(norms).pow(2).sum().item<double>();
}

}  // namespace

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  return clip_grad_norm(params, {}, max_norm, [](double local) { return local; });
}

double clip_grad_norm(const std::vector<torch::Tensor>& replicated, const std::vector<torch::Tensor>& sharded,
                      double max_norm, const std::function<double(double)>& sum_over_ranks) {
  torch::NoGradGuard no_grad;
  const double norm = std::sqrt(squared_grad_norm(replicated) + sum_over_ranks(squared_grad_norm(sharded)));
  if (max_norm > 0.0 && std::isfinite(norm) && norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);
    for (const auto* list : {&replicated, &sharded}) {
      for (const auto& p : *list) {
        if (p.grad().defined()) p.grad().mul_(scale);
      }
    }
  }
  return norm;
}

}  // namespace nextn

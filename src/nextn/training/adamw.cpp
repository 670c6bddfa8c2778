#include "nextn/training/adamw.h"

#include <cmath>

#include "nextn/kernels/adamw_update.h"
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

namespace {

// The one-pass kernel takes float32 CPU tensors laid out densely; anything else (double in tests,
// CUDA, bf16 parameters) takes the libtorch operators.
bool fused_update_applies(const OptimizedParameter& p, const torch::Tensor& grad) {
  for (const torch::Tensor* t : {&p.param, &grad, &p.exp_avg, &p.exp_avg_sq}) {
    if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat || !t->is_contiguous()) return false;
  }
  return true;
}

}  // namespace

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bias_correction1;
  const double sqrt_bc2 = std::sqrt(bias_correction2);
  kernels::AdamWStepConstants step_constants;  // the one-pass kernel's; decay is set per parameter
  step_constants.beta1 = static_cast<float>(options_.beta1);
  step_constants.beta2 = static_cast<float>(options_.beta2);
  step_constants.one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
  step_constants.one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
  step_constants.sqrt_bias_correction2 = static_cast<float>(sqrt_bc2);
  step_constants.eps = static_cast<float>(options_.eps);
  step_constants.step_size = static_cast<float>(step_size);
  for (auto& p : params_) {
    const torch::Tensor& grad = p.param.grad();
    if (!grad.defined()) continue;
    const bool decays = p.decay && options_.weight_decay != 0.0;
    if (options_.one_pass && fused_update_applies(p, grad)) {
      kernels::AdamWStepConstants c = step_constants;
      c.decay = decays ? static_cast<float>(1.0 - lr * options_.weight_decay) : 1.0f;
      kernels::adamw_update(p.param.data_ptr<float>(), grad.data_ptr<float>(), p.exp_avg.data_ptr<float>(),
                            p.exp_avg_sq.data_ptr<float>(), p.param.numel(), c);
      continue;
    }
    if (decays) p.param.mul_(1.0 - lr * options_.weight_decay);
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

// Sum of squared gradient norms, accumulated in double: float32 CPU gradients in one pass without
// a double copy (kernels/adamw_update.h), others on their device (one sync).
double squared_grad_norm(const std::vector<torch::Tensor>& params) {
  double total = 0.0;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params) {
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (g.device().is_cpu() && g.scalar_type() == torch::kFloat && g.is_contiguous()) {
      total += kernels::sum_of_squares(g.data_ptr<float>(), g.numel());
    } else {
      norms.push_back(g.to(torch::kDouble).norm());
    }
  }
  if (!norms.empty()) total += torch::stack(norms).pow(2).sum().item<double>();
  return total;
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

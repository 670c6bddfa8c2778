#include "nextn/distributed/communicator.h"

#include <chrono>
#include <numeric>

#include "nextn/distributed/backend.h"
#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

using Clock = std::chrono::steady_clock;

int64_t tensor_bytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// A tensor where the group's collectives need it (itself when it is there already).
torch::Tensor staged(const torch::Tensor& t, const torch::Device& device) {
  return t.device() == device ? t.contiguous() : t.to(device).contiguous();
}

void check_counts(const std::vector<int64_t>& counts, int size, const char* what) {
  NEXTN_CHECK(static_cast<int>(counts.size()) == size, "all_to_all: ", counts.size(), " ", what, " counts for a group of ",
              size);
  for (int64_t c : counts) NEXTN_CHECK(c >= 0, "all_to_all: negative ", what, " count ", c);
}

}  // namespace

const char* to_string(Collective kind) {
  switch (kind) {
    case Collective::kAllReduce: return "all_reduce";
    case Collective::kBroadcast: return "broadcast";
    case Collective::kAllGather: return "all_gather";
    case Collective::kGather: return "gather";
    case Collective::kAllToAll: return "all_to_all";
    case Collective::kBarrier: return "barrier";
  }
  return "?";
}

double CommStats::seconds() const {
  double total = 0;
  for (const auto& s : by_kind) total += s.seconds;
  return total;
}

int64_t CommStats::bytes() const {
  int64_t total = 0;
  for (const auto& s : by_kind) total += s.bytes;
  return total;
}

CommStats& CommStats::operator+=(const CommStats& other) {
  for (int k = 0; k < kCollectiveKinds; ++k) {
    by_kind[k].calls += other.by_kind[k].calls;
    by_kind[k].bytes += other.by_kind[k].bytes;
    by_kind[k].seconds += other.by_kind[k].seconds;
  }
  return *this;
}

PendingReduce::PendingReduce(Communicator* owner, std::shared_ptr<WorkHandle> work, int64_t bytes)
    : owner_(owner), work_(std::move(work)), bytes_(bytes) {}

void PendingReduce::wait() {
  if (!work_) return;
  auto work = std::move(work_);
  owner_->run(Collective::kAllReduce, bytes_, [&] { work->work->wait(); });
}

Communicator::Communicator(std::shared_ptr<ProcessGroupHandle> group, std::string name, std::vector<int> group_ranks,
                           FailureDiagnosis diagnose)
    : group_(std::move(group)), name_(std::move(name)), group_ranks_(std::move(group_ranks)),
      diagnose_(std::move(diagnose)) {
  rank_ = group_->group->getRank();
  NEXTN_CHECK(group_->group->getSize() == size(), "process group '", name_, "' has ", group_->group->getSize(),
              " ranks, expected ", size());
}

Communicator::~Communicator() = default;

void Communicator::run(Collective kind, int64_t bytes, const std::function<void()>& call) {
  const auto start = Clock::now();
  try {
    call();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = error_text(e);
    const std::string diagnosis = diagnose_ ? diagnose_() : std::string();
    fail(to_string(kind), " on process group '", name_, "' failed: ", what,
         diagnosis.empty() ? std::string() : "; " + diagnosis);
  }
  CollectiveStats& s = stats_[kind];
  ++s.calls;
  s.bytes += bytes;
  s.seconds += std::chrono::duration<double>(Clock::now() - start).count();
}

void Communicator::all_reduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one{staged(tensor, group_->device)};
  run(Collective::kAllReduce, tensor_bytes(tensor), [&] { group_->group->allreduce(one)->wait(); });
  if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
}

void Communicator::all_reduce_max(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one{staged(tensor, group_->device)};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  run(Collective::kAllReduce, tensor_bytes(tensor), [&] { group_->group->allreduce(one, options)->wait(); });
  if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
}

PendingReduce Communicator::all_reduce_sum_async(torch::Tensor& flat) {
  NEXTN_CHECK(flat.device() == group_->device && flat.is_contiguous(), "all_reduce_sum_async: the tensor must be "
              "contiguous on ", group_->device.str());
  std::vector<torch::Tensor> one{flat};
  auto work = std::make_shared<WorkHandle>();
  try {
    work->work = group_->group->allreduce(one);  // counted once, when waited for
  } catch (const std::exception&) {
    const std::exception_ptr error = std::current_exception();
    run(Collective::kAllReduce, 0, [&] { std::rethrow_exception(error); });  // the same message as every other failure
  }
  return PendingReduce(this, std::move(work), tensor_bytes(flat));
}

void Communicator::broadcast(torch::Tensor& tensor, int root) {
  std::vector<torch::Tensor> one{staged(tensor, group_->device)};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  run(Collective::kBroadcast, rank_ == root ? tensor_bytes(tensor) : 0,
      [&] { group_->group->broadcast(one, options)->wait(); });
  if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
}

std::vector<torch::Tensor> Communicator::all_gather(const torch::Tensor& tensor) {
  std::vector<torch::Tensor> inputs{staged(tensor, group_->device)};
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int p = 0; p < size(); ++p) outputs[0].push_back(torch::empty_like(inputs[0]));
  run(Collective::kAllGather, tensor_bytes(tensor), [&] { group_->group->allgather(outputs, inputs)->wait(); });
  for (auto& t : outputs[0]) t = t.to(tensor.device());
  return outputs[0];
}

std::vector<torch::Tensor> Communicator::gather(const torch::Tensor& tensor, int root) {
  std::vector<torch::Tensor> inputs{staged(tensor, group_->device)};
  std::vector<std::vector<torch::Tensor>> outputs;
  if (rank_ == root) {
    outputs.resize(1);
    for (int p = 0; p < size(); ++p) outputs[0].push_back(torch::empty_like(inputs[0]));
  }
  c10d::GatherOptions options;
  options.rootRank = root;
  run(Collective::kGather, tensor_bytes(tensor), [&] { group_->group->gather(outputs, inputs, options)->wait(); });
  if (rank_ != root) return {};
  for (auto& t : outputs[0]) t = t.to(tensor.device());
  return outputs[0];
}

torch::Tensor Communicator::all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_counts,
                                       const std::vector<int64_t>& recv_counts) {
  check_counts(send_counts, size(), "send");
  check_counts(recv_counts, size(), "receive");
  const int64_t sent_rows = std::accumulate(send_counts.begin(), send_counts.end(), int64_t{0});
  const int64_t received_rows = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t{0});
  NEXTN_CHECK(input.dim() >= 1 && input.size(0) == sent_rows, "all_to_all: input has ",
              input.dim() >= 1 ? input.size(0) : 0, " rows, the send counts add up to ", sent_rows);
  std::vector<int64_t> out_shape = input.sizes().vec();
  out_shape[0] = received_rows;
  auto in = staged(input, group_->device);
  auto output = torch::empty(out_shape, in.options());
  const int64_t row_bytes = sent_rows > 0 ? tensor_bytes(in) / sent_rows : 0;
  const int64_t remote_bytes = (sent_rows - send_counts[rank_]) * row_bytes;
  // c10d takes split sizes in rows of dim 0 (output splits first).
  std::vector<int64_t> recv_splits(recv_counts), send_splits(send_counts);
  run(Collective::kAllToAll, remote_bytes,
      [&] { group_->group->alltoall_base(output, in, recv_splits, send_splits)->wait(); });
  return output.device() == input.device() ? output : output.to(input.device());
}

std::vector<int64_t> Communicator::exchange_counts(const std::vector<int64_t>& counts) {
  check_counts(counts, size(), "send");
  auto send = torch::tensor(counts, torch::kLong).to(group_->device);
  auto recv = torch::empty({size()}, send.options());
  std::vector<int64_t> ones(size(), 1);
  run(Collective::kAllToAll, (size() - 1) * 8, [&] { group_->group->alltoall_base(recv, send, ones, ones)->wait(); });
  recv = recv.to(torch::kCPU);
  return std::vector<int64_t>(recv.data_ptr<int64_t>(), recv.data_ptr<int64_t>() + size());
}

void Communicator::barrier() {
  run(Collective::kBarrier, 0, [&] { group_->group->barrier()->wait(); });
}

CommStats Communicator::take_stats() {
  CommStats taken = stats_;
  stats_ = CommStats{};
  return taken;
}

}  // namespace nextn::dist

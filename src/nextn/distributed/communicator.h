// One group of ranks and the collectives nextn runs over it, on a c10d process group (Gloo on
// CPU, NCCL on CUDA: distributed/backend.h). Every call is a collective: all ranks of the group
// make the same calls in the same order. A failure (a lost peer, a timeout) becomes a
// nextn::Error that names the group, the collective and, when the cluster can tell, the lost rank.
// Each call is counted (calls, payload bytes, seconds the caller waited) for the step metrics.
#pragma once

#include <torch/torch.h>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace nextn::dist {

struct ProcessGroupHandle;  // a c10d::ProcessGroup (backend.h)
struct WorkHandle;          // a c10d::Work in flight

enum class Collective { kAllReduce, kBroadcast, kAllGather, kGather, kAllToAll, kBarrier };
inline constexpr int kCollectiveKinds = 6;
const char* to_string(Collective kind);  // "all_reduce", ...

struct CollectiveStats {
  int64_t calls = 0;
  int64_t bytes = 0;     // payload this rank contributed (all-to-all: rows sent to other ranks)
  double seconds = 0;    // time this rank's caller waited for it
};

struct CommStats {
  std::array<CollectiveStats, kCollectiveKinds> by_kind{};
  CollectiveStats& operator[](Collective kind) { return by_kind[static_cast<int>(kind)]; }
  const CollectiveStats& operator[](Collective kind) const { return by_kind[static_cast<int>(kind)]; }
  double seconds() const;
  int64_t bytes() const;
  CommStats& operator+=(const CommStats& other);
};

// Explains a failed collective (which rank was lost); set by the Cluster that owns the group.
using FailureDiagnosis = std::function<std::string()>;

class Communicator;

// An all-reduce in flight (gradient buckets): wait() blocks, counts the wait, and turns a
// failure into nextn::Error as the synchronous calls do.
class PendingReduce {
 public:
  PendingReduce(Communicator* owner, std::shared_ptr<WorkHandle> work, int64_t bytes);
  void wait();

 private:
  Communicator* owner_;
  std::shared_ptr<WorkHandle> work_;
  int64_t bytes_;
};

class Communicator {
 public:
  // group_ranks: the global ranks of the group's members, in group-rank order.
  Communicator(std::shared_ptr<ProcessGroupHandle> group, std::string name, std::vector<int> group_ranks,
               FailureDiagnosis diagnose);
  ~Communicator();

  int rank() const { return rank_; }  // in this group
  int size() const { return static_cast<int>(group_ranks_.size()); }
  int global_rank(int group_rank) const { return group_ranks_.at(group_rank); }
  const std::string& name() const { return name_; }

  // In place, sum (or max) over the group.
  void all_reduce_sum(torch::Tensor& tensor);
  void all_reduce_max(torch::Tensor& tensor);
  PendingReduce all_reduce_sum_async(torch::Tensor& flat);  // `flat`: contiguous, on the group's device
  void broadcast(torch::Tensor& tensor, int root);
  // Every member's tensor (same shape on every rank), in group-rank order.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor);
  // Root receives every member's tensor (same shape everywhere), in group-rank order; others get {}.
  std::vector<torch::Tensor> gather(const torch::Tensor& tensor, int root);
  // Rows of `input` [sum(send_counts), ...]: send_counts[p] consecutive rows go to member p; returns
  // [sum(recv_counts), ...] with member p's rows at the offset of p. Counts must agree pairwise
  // (exchange_counts gives them).
  torch::Tensor all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_counts,
                           const std::vector<int64_t>& recv_counts);
  // counts[p] sent to member p; returns what each member sent to this one.
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& counts);
  void barrier();

  const CommStats& stats() const { return stats_; }
  CommStats take_stats();  // returns the counts so far and starts anew

  // Runs a blocking c10d call; counts it, and turns failures into nextn::Error. Public for
  // PendingReduce and the cluster's own set-up calls.
  void run(Collective kind, int64_t bytes, const std::function<void()>& call);

 private:
  std::shared_ptr<ProcessGroupHandle> group_;
  std::string name_;
  std::vector<int> group_ranks_;
  int rank_ = 0;
  FailureDiagnosis diagnose_;
  CommStats stats_;
};

}  // namespace nextn::dist

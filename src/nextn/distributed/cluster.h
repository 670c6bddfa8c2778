// The ranks of a distributed job and their process groups (c10d), set up once per process:
//   world         every rank: control values (metrics, expert counts, flags), checkpoints
//   gradients     every rank: the data-parallel all-reduce of replicated parameters' gradients
//                 (its own group, so that its buckets in flight never interleave with control calls)
//   experts       the E ranks of this rank's expert-parallel group (consecutive ranks
//                 [g*E, (g+1)*E)): the all-to-all of tokens to the experts they hold
//   expert_data   the W/E ranks holding the same experts (ranks r with r mod E equal): the
//                 all-reduce of expert gradients; absent when W == E
// Rendezvous is a c10d::TCPStore that rank 0 serves at MASTER_ADDR:MASTER_PORT. Every rank
// publishes a heartbeat in the store twice a second from a thread of its own, so that when a
// collective fails the survivors can name the rank that stopped (a dead rank's heartbeat stops).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <future>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nextn/distributed/communicator.h"
#include "nextn/distributed/launch_env.h"

namespace nextn::dist {

enum class Backend { kGloo, kNccl };
struct Heartbeat;
Backend backend_for(const torch::Device& device);  // NCCL for CUDA devices, Gloo for CPU
std::string to_string(Backend backend);
bool backend_available(Backend backend);           // NCCL only in builds with NEXTN_WITH_NCCL

struct ClusterOptions {
  int expert_parallel = 1;  // E: ranks that split each MoE layer's routed experts
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};  // every collective and the rendezvous
  torch::Device device{torch::kCPU};
};

class Cluster {
 public:
  // Connects to the rendezvous and builds the groups; nextn::Error naming the problem when E does
  // not divide the world, the rendezvous cannot be reached within the timeout, or the backend is
  // not built in. A LaunchEnv of one process gives a cluster of one with no groups.
  Cluster(const LaunchEnv& env, const ClusterOptions& options);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool distributed() const { return env_.world_size > 1; }
  bool is_main() const { return env_.rank == 0; }  // prints, logs, writes checkpoints
  int expert_parallel() const { return options_.expert_parallel; }
  int expert_rank() const { return env_.rank % options_.expert_parallel; }  // in its expert-parallel group
  const LaunchEnv& env() const { return env_; }
  const ClusterOptions& options() const { return options_; }
  Backend backend() const { return backend_; }

  // Null in a cluster of one; expert groups are null when E == 1, expert_data when W == E.
  Communicator* world() { return world_.get(); }
  Communicator* gradients() { return gradients_.get(); }
  Communicator* experts() { return experts_.get(); }
  Communicator* expert_data() { return expert_data_.get(); }

  // Every group's collective counts since the last call (for the per-step metrics).
  CommStats take_stats();

  // Which ranks stopped publishing heartbeats (waits a few heartbeat periods to tell): the
  // explanation a failed collective gives. Empty text when every rank is alive.
  std::string diagnose_failure();

  std::string describe() const;  // "2 ranks (gloo), expert parallel 2, this is rank 0"

 private:
  void start_heartbeat();
  void stop_heartbeat();
  void make_groups();
  // Each rank counts itself in on the store and waits until all have: a rank that never starts is
  // named (by every rank that waits for it) instead of surfacing as a socket timeout in gloo.
  void wait_for_every_rank();
  std::shared_ptr<Communicator> make_group(const std::string& name, const std::vector<int>& members);

  LaunchEnv env_;
  ClusterOptions options_;
  Backend backend_ = Backend::kGloo;
  struct Store;
  std::unique_ptr<Store> store_;
  std::shared_ptr<Communicator> world_, gradients_, experts_, expert_data_;
  std::shared_ptr<Heartbeat> heartbeat_;  // shared with its thread (cluster.cpp)
  std::shared_future<void> heartbeat_exited_;
};

// Process-wide access for code that cannot be handed the cluster (error reporting in main).
// Null when no cluster was made.
Cluster* current_cluster();

}  // namespace nextn::dist

#include "nextn/distributed/cluster.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <csignal>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "nextn/distributed/backend.h"
#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(500);
constexpr const char* kHeartbeatKey = "nextn/heartbeat/";

Cluster* g_current = nullptr;

// Rank 0's connection serves the store. None waits for the others here (TCPStore's waitWorkers
// made rank 0 wait out the whole timeout before it could count itself in, so that the ranks that
// came blamed it): Cluster::wait_for_every_rank does, and names who is missing.
c10::intrusive_ptr<c10d::TCPStore> connect_store(const LaunchEnv& env, bool server, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(env.master_port);
  options.isServer = server;
  options.timeout = timeout;
  options.waitWorkers = false;
  return c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
}

}  // namespace

struct Cluster::Store {
  c10::intrusive_ptr<c10d::TCPStore> main;  // rendezvous of the process groups
};

Cluster::Cluster(const LaunchEnv& env, const ClusterOptions& options) : env_(env), options_(options) {
  NEXTN_CHECK(options_.expert_parallel >= 1, "--expert-parallel must be at least 1, got ", options_.expert_parallel);
  NEXTN_CHECK(env_.world_size % options_.expert_parallel == 0, "--expert-parallel ", options_.expert_parallel,
              " does not divide the world size ", env_.world_size, " (data parallel x expert parallel = world)");
  backend_ = backend_for(options_.device);
  if (!distributed()) return;
  NEXTN_CHECK(backend_available(backend_), "device ", options_.device.str(), " needs the ", to_string(backend_),
              " backend, which this build of nextn lacks (see README, The CUDA build)");
  // A peer that closes its socket must give this rank an error, not kill it with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  store_ = std::make_unique<Store>();
  try {
    store_->main = connect_store(env_, env_.rank == 0, options_.timeout);
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, " could not ", env_.rank == 0 ? "serve" : "reach", " the rendezvous at ", env_.master_addr,
         ":", env_.master_port, " (MASTER_ADDR:MASTER_PORT) within ",
         std::chrono::duration_cast<std::chrono::seconds>(options_.timeout).count(), " s: ", error_text(e),
         env_.rank == 0 ? std::string(" (a port in use, or not every rank started?)")
                        : std::string(" (is MASTER_ADDR rank 0's machine, and did rank 0 start?)"));
  }
  start_heartbeat();
  try {
    wait_for_every_rank();
    make_groups();
  } catch (...) {
    stop_heartbeat();  // the destructor does not run when the constructor throws
    throw;
  }
  g_current = this;
}

Cluster::~Cluster() {
  if (g_current == this) g_current = nullptr;
  stop_heartbeat();
}

void Cluster::wait_for_every_rank() {
  const std::string joined = "nextn/joined";
  store_->main->set(joined + "/" + std::to_string(env_.rank), std::vector<uint8_t>{1});
  // The last rank to count itself in says so; everyone waits for that one key (a request each,
  // not a poll each: the store serves every rank from one thread).
  if (store_->main->add(joined, 1) == env_.world_size) store_->main->set(joined + "/all", std::vector<uint8_t>{1});
  try {
    store_->main->wait({joined + "/all"}, options_.timeout);
    return;
  } catch (const std::exception&) {
    // Timed out: who is missing is listed below (one request per rank, once).
  }
  std::string missing;
  int count = 0;
  try {
    for (int r = 0; r < env_.world_size; ++r) {
      if (store_->main->check({joined + "/" + std::to_string(r)})) continue;
      missing += (count++ == 0 ? "" : ", ") + std::to_string(r);
    }
  } catch (const std::exception& e) {  // rank 0 gave up first (its own deadline came earlier) and left
    fail("lost rank 0 (it serves the rendezvous store at ", env_.master_addr, ":", env_.master_port,
         ") while waiting for every rank to join: ", error_text(e));
  }
  if (count == 0) return;  // the last one came at the deadline
  fail(count == 1 ? "rank " : "ranks ", missing, " of ", env_.world_size, " did not join the rendezvous at ",
       env_.master_addr, ":", env_.master_port, " within ",
       std::chrono::duration_cast<std::chrono::seconds>(options_.timeout).count(),
       " s (--dist-timeout): was every rank started, with the same MASTER_ADDR, MASTER_PORT and world size?");
}

void Cluster::make_groups() {
  std::vector<int> everyone(env_.world_size);
  for (int r = 0; r < env_.world_size; ++r) everyone[r] = r;
  world_ = make_group("world", everyone);
  gradients_ = make_group("gradients", everyone);
  const int e = options_.expert_parallel;
  // Ranks that disagree on E would each wait for groups the others never create (until the
  // timeout, with an error about sockets): compare it first, on the world group they all share.
  const auto layouts = world_->all_gather(torch::tensor({static_cast<int64_t>(e)}, torch::kLong));
  for (int r = 0; r < env_.world_size; ++r) {
    NEXTN_CHECK(layouts[r][0].item<int64_t>() == e, "rank ", r, " runs with --expert-parallel ",
                layouts[r][0].item<int64_t>(), ", rank ", env_.rank, " with ", e,
                ": every rank must be started with the same options");
  }
  if (e > 1) {
    // Each rank creates only the groups it belongs to; the store prefix keeps groups apart.
    std::vector<int> expert_group;
    const int first = env_.rank / e * e;
    for (int r = first; r < first + e; ++r) expert_group.push_back(r);
    experts_ = make_group("experts-" + std::to_string(env_.rank / e), expert_group);
    if (env_.world_size > e) {
      std::vector<int> holders;
      for (int r = env_.rank % e; r < env_.world_size; r += e) holders.push_back(r);
      expert_data_ = make_group("expert-data-" + std::to_string(env_.rank % e), holders);
    }
  }
}

std::shared_ptr<Communicator> Cluster::make_group(const std::string& name, const std::vector<int>& members) {
  int group_rank = -1;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == env_.rank) group_rank = static_cast<int>(i);
  }
  NEXTN_CHECK(group_rank >= 0, "rank ", env_.rank, " is not a member of process group '", name, "'");
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nextn/group/" + name, store_->main);
  std::shared_ptr<ProcessGroupHandle> group;
  try {
    group = make_process_group(backend_, prefixed, group_rank, static_cast<int>(members.size()), options_.timeout,
                               env_.master_addr, options_.device);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, " could not connect process group '", name, "' (", to_string(backend_), "): ",
         error_text(e));
  }
  return std::make_shared<Communicator>(group, name, members, [this] { return diagnose_failure(); });
}

// A store request to a rank 0 that hangs (stopped, or its machine gone without closing the
// connection) never returns: the heartbeat thread and each diagnosis run detached, own what they
// use, and are waited for with a time limit.
struct Heartbeat {
  c10::intrusive_ptr<c10d::TCPStore> store;
  std::string key;
  std::atomic<bool> stopping{false};
  std::promise<void> exited;
};

void Cluster::start_heartbeat() {
  auto heartbeat = std::make_shared<Heartbeat>();
  try {
    heartbeat->store = connect_store(env_, /*server=*/false, options_.timeout);
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, " could not open its heartbeat connection to ", env_.master_addr, ":", env_.master_port,
         ": ", error_text(e));
  }
  heartbeat->key = kHeartbeatKey + std::to_string(env_.rank);
  heartbeat->store->add(heartbeat->key, 1);
  heartbeat_exited_ = heartbeat->exited.get_future().share();
  heartbeat_ = heartbeat;
  std::thread([heartbeat] {
    try {
      while (!heartbeat->stopping) {
        heartbeat->store->add(heartbeat->key, 1);
        for (auto waited = std::chrono::milliseconds(0); waited < kHeartbeatPeriod && !heartbeat->stopping;
             waited += std::chrono::milliseconds(50)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    } catch (const std::exception&) {
      // The store is gone (rank 0 ended): nothing left to tell.
    }
    heartbeat->exited.set_value();
  }).detach();
}

void Cluster::stop_heartbeat() {
  if (!heartbeat_) return;
  heartbeat_->stopping = true;
  heartbeat_exited_.wait_for(std::chrono::seconds(2));  // else it is stuck on a hung rank 0, and stays behind
  heartbeat_.reset();
}

std::string Cluster::diagnose_failure() {
  if (!store_) return "";
  const LaunchEnv env = env_;
  const auto timeout = options_.timeout;
  auto answer = std::make_shared<std::promise<std::string>>();
  std::future<std::string> diagnosis = answer->get_future();
  std::thread([env, timeout, answer] {
    std::string text;
    try {
      auto store = connect_store(env, /*server=*/false, timeout);
      auto read_all = [&] {
        std::vector<int64_t> beats(env.world_size, 0);
        for (int r = 0; r < env.world_size; ++r) beats[r] = store->add(kHeartbeatKey + std::to_string(r), 0);
        return beats;
      };
      const auto before = read_all();
      std::this_thread::sleep_for(3 * kHeartbeatPeriod);
      const auto after = read_all();
      std::vector<int> lost;
      for (int r = 0; r < env.world_size; ++r) {
        if (r != env.rank && after[r] == before[r]) lost.push_back(r);
      }
      if (lost.empty()) {
        text = "every rank is alive (a rank is slow, or the ranks disagree on which collective comes next)";
      } else {
        std::string names;
        for (int r : lost) names += (names.empty() ? "" : ", ") + std::to_string(r);
        text = cat(lost.size() == 1 ? "lost rank " : "lost ranks ", names, " (no heartbeat for ",
                   3 * kHeartbeatPeriod.count() / 1000.0, " s)");
      }
    } catch (const std::exception&) {
      text = cat("lost rank 0 (it serves the rendezvous store at ", env.master_addr, ":", env.master_port,
                 ", which no longer answers)");
    }
    answer->set_value(text);
  }).detach();
  if (diagnosis.wait_for(3 * kHeartbeatPeriod + std::chrono::seconds(2)) == std::future_status::ready) {
    return diagnosis.get();
  }
  return cat("lost rank 0 (it serves the rendezvous store at ", env_.master_addr, ":", env_.master_port,
             ", which accepts connections but does not answer: hung, or stopped)");
}

CommStats Cluster::take_stats() {
  CommStats total;
  for (auto* group : {world_.get(), gradients_.get(), experts_.get(), expert_data_.get()}) {
    if (group != nullptr) total += group->take_stats();
  }
  return total;
}

std::string Cluster::describe() const {
  if (!distributed()) return "1 process";
  return cat(env_.world_size, " ranks (", to_string(backend_), ", ", env_.launcher, "), data parallel ",
             env_.world_size / options_.expert_parallel, " x expert parallel ", options_.expert_parallel);
}

Cluster* current_cluster() { return g_current; }

}  // namespace nextn::dist

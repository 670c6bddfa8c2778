#include "nextn/distributed/launch_env.h"

#include <cstdlib>

#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

// The variable as an integer in [low, high]; nullopt when unset.
std::optional<int> integer_variable(const EnvLookup& lookup, const std::string& name, long low, long high) {
  std::optional<std::string> text = lookup(name);
  if (!text) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text->c_str(), &end, 10);
  NEXTN_CHECK(!text->empty() && end != nullptr && *end == '\0' && errno == 0, "environment variable ", name, "='",
              *text, "' is not an integer");
  NEXTN_CHECK(value >= low && value <= high, "environment variable ", name, "=", value, " is outside [", low, ", ",
              high, "]");
  return static_cast<int>(value);
}

int required_integer(const EnvLookup& lookup, const std::string& name, const std::string& because, long low,
                     long high) {
  std::optional<int> value = integer_variable(lookup, name, low, high);
  NEXTN_CHECK(value.has_value(), "environment variable ", name, " is not set although ", because, " is");
  return *value;
}

// Slurm's SLURM_NTASKS_PER_NODE may read "2" or "2(x3)"; the leading count is this node's.
std::optional<int> slurm_tasks_per_node(const EnvLookup& lookup) {
  std::optional<std::string> text = lookup("SLURM_NTASKS_PER_NODE");
  if (!text || text->empty()) return std::nullopt;
  const std::string leading = text->substr(0, text->find_first_not_of("0123456789"));
  NEXTN_CHECK(!leading.empty(), "environment variable SLURM_NTASKS_PER_NODE='", *text, "' does not start with a count");
  return std::stoi(leading);
}

}  // namespace

LaunchEnv detect_launch_env(const EnvLookup& lookup) {
  constexpr long kMaxRanks = 1 << 20;
  LaunchEnv env;
  if (lookup("WORLD_SIZE") || lookup("RANK")) {
    env.launcher = lookup("NEXTN_LAUNCHER").value_or("") == "nextn" ? "nextn" : "torchrun";
    env.world_size = required_integer(lookup, "WORLD_SIZE", "RANK", 1, kMaxRanks);
    env.rank = required_integer(lookup, "RANK", "WORLD_SIZE", 0, env.world_size - 1);
    env.local_rank = integer_variable(lookup, "LOCAL_RANK", 0, env.world_size - 1).value_or(env.rank);
    env.local_world_size =
        integer_variable(lookup, "LOCAL_WORLD_SIZE", 1, env.world_size).value_or(env.world_size);
    env.restart_count = integer_variable(lookup, "TORCHELASTIC_RESTART_COUNT", 0, kMaxRanks).value_or(0);
  } else if (lookup("OMPI_COMM_WORLD_SIZE")) {
    env.launcher = "openmpi";
    env.world_size = required_integer(lookup, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", 1, kMaxRanks);
    env.rank = required_integer(lookup, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", 0, env.world_size - 1);
    env.local_rank = integer_variable(lookup, "OMPI_COMM_WORLD_LOCAL_RANK", 0, env.world_size - 1).value_or(0);
    env.local_world_size =
        integer_variable(lookup, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, env.world_size).value_or(env.world_size);
  } else if (lookup("SLURM_PROCID") && lookup("SLURM_NTASKS") && !lookup("SLURM_STEP_ID") && !lookup("SLURM_STEPID")) {
    // The batch script of an sbatch job, or an salloc shell: the allocation's variables, no ranks.
    const std::optional<int> tasks = integer_variable(lookup, "SLURM_NTASKS", 1, kMaxRanks);
    if (tasks && *tasks > 1) {
      env.note = cat("Slurm allocated ", *tasks, " tasks, but this process was not started by srun: it runs alone "
                     "(start the ranks with `srun nextn train ...`)");
    }
    return env;
  } else if (lookup("SLURM_PROCID") && lookup("SLURM_NTASKS")) {
    env.launcher = "slurm";
    env.world_size = required_integer(lookup, "SLURM_NTASKS", "SLURM_PROCID", 1, kMaxRanks);
    env.rank = required_integer(lookup, "SLURM_PROCID", "SLURM_NTASKS", 0, env.world_size - 1);
    env.local_rank = integer_variable(lookup, "SLURM_LOCALID", 0, env.world_size - 1).value_or(0);
    env.local_world_size = slurm_tasks_per_node(lookup).value_or(env.world_size);
    if (auto launch_node = lookup("SLURM_LAUNCH_NODE_IPADDR")) env.master_addr = *launch_node;
  } else {
    return env;  // a job of one
  }
  NEXTN_CHECK(env.local_rank < env.local_world_size, "local rank ", env.local_rank, " is outside the ",
              env.local_world_size, " ranks of this node (", env.launcher, "'s variables)");
  if (auto addr = lookup("MASTER_ADDR")) {
    NEXTN_CHECK(!addr->empty(), "environment variable MASTER_ADDR is empty");
    env.master_addr = *addr;
  } else {
    // Every rank on this machine: the rendezvous is local. Across machines it must be named.
    const bool slurm_named_it = env.launcher == "slurm" && lookup("SLURM_LAUNCH_NODE_IPADDR");
    NEXTN_CHECK(env.local_world_size >= env.world_size || slurm_named_it,
                "environment variable MASTER_ADDR is not set: a job of ", env.world_size, " ranks over several ",
                "machines needs the address of rank 0's machine");
  }
  env.master_port = integer_variable(lookup, "MASTER_PORT", 1, 65535).value_or(kDefaultMasterPort);
  return env;
}

LaunchEnv detect_launch_env() {
  return detect_launch_env([](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
}

std::string describe(const LaunchEnv& env) {
  if (!env.distributed()) return "a single process";
  return cat("rank ", env.rank, " of ", env.world_size, " (local ", env.local_rank, " of ", env.local_world_size, "), ",
             env.launcher, ", rendezvous ", env.master_addr, ":", env.master_port,
             env.restart_count > 0 ? cat(", restart ", env.restart_count) : std::string());
}

}  // namespace nextn::dist

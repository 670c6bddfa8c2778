// Who this process is in a multi-process job, read from the variables its launcher sets:
//   torchrun (and `nextn train --nproc-per-node`): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//       MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RESTART_COUNT
//   Open MPI's mpirun: OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
//       OMPI_COMM_WORLD_LOCAL_SIZE (MASTER_ADDR / MASTER_PORT from the job script)
//   Slurm's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE; MASTER_ADDR
//       defaults to SLURM_LAUNCH_NODE_IPADDR (the node that ran srun, the batch host in sbatch).
//       Only inside a job step (SLURM_STEP_ID, which srun sets): an sbatch script or an salloc
//       shell has SLURM_PROCID=0 and the allocation's SLURM_NTASKS too, and a process started
//       there without srun is alone, not rank 0 of ranks that will never come.
// checked in that order. With none of them the process is a job of one.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace nextn::dist {

inline constexpr int kDefaultMasterPort = 29500;  // torchrun's

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = kDefaultMasterPort;
  int restart_count = 0;          // torchrun's restarts of the whole job so far
  std::string launcher = "none";  // "torchrun", "nextn" (train --nproc-per-node), "openmpi", "slurm", "none"
  // A job of one that its environment might have made look like more (Slurm tasks without srun):
  // why it is alone, for the user to read. Empty otherwise.
  std::string note;

  bool distributed() const { return world_size > 1; }
};

// Looks a variable up; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// nextn::Error naming the variable when one is malformed (not an integer, a rank outside the
// world, a port outside 1..65535) or when a multi-node job lacks MASTER_ADDR.
LaunchEnv detect_launch_env(const EnvLookup& lookup);
LaunchEnv detect_launch_env();  // from this process's environment

std::string describe(const LaunchEnv& env);  // "rank 1 of 2 (local 1 of 2), torchrun, master 127.0.0.1:29500"

}  // namespace nextn::dist

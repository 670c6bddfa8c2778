// `nextn train --nproc-per-node N`: this process becomes a launcher, as torchrun is, and starts N
// copies of the same command line as ranks of one job, with the variables torchrun sets (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Several machines: run it
// on each with --nnodes M --node-rank R --master-addr <rank 0's machine> --master-port P.
//
// Each rank runs in a process group of its own, so that Ctrl-C reaches the launcher alone, which
// forwards one SIGINT/SIGTERM to every rank (each finishes its step and writes a checkpoint).
// When a rank fails, the others get `grace` to notice and exit with their own error, then are
// killed; the launcher exits with the first failure's status.
#pragma once

#include <csignal>
#include <chrono>
#include <string>
#include <vector>

namespace nextn::dist {

struct LocalLaunch {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port of this machine (one machine only)
  std::chrono::seconds grace{5};  // after a rank failed, before the others get SIGTERM (SIGKILL 3 s later)
};

// Runs the ranks of this machine to their end; returns the exit status for the launcher.
// argv: the command line to run in each rank (argv[0] is replaced by this executable).
int launch_local_ranks(const LocalLaunch& launch, const std::vector<std::string>& argv);

// What each rank of launch_local_ranks receives when the launcher dies (PR_SET_PDEATHSIG): the
// trainer stops on it as on SIGTERM (training/stop_signal.h). Not SIGTERM itself: the kernel sends
// it again each time the rank passes from one exiting thread of the launcher to the next, and a
// second SIGTERM means "exit now".
constexpr int kLauncherGoneSignal = SIGUSR2;

// A TCP port on 127.0.0.1 that nobody listens on at the moment of asking.
int free_local_port();

}  // namespace nextn::dist

#include "nextn/distributed/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

std::atomic<int> g_forward_signal{0};

void remember_signal(int signal_number) { g_forward_signal = signal_number; }

std::string exit_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "ended";
}

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  NEXTN_CHECK(fd >= 0, "cannot open a socket to find a free port: ", errno_text());
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  NEXTN_CHECK(ok, "cannot find a free port on 127.0.0.1: ", errno_text());
  return ntohs(address.sin_port);
}

int launch_local_ranks(const LocalLaunch& launch, const std::vector<std::string>& argv) {
  NEXTN_CHECK(launch.nproc_per_node >= 1, "--nproc-per-node must be at least 1, got ", launch.nproc_per_node);
  NEXTN_CHECK(launch.nnodes >= 1, "--nnodes must be at least 1, got ", launch.nnodes);
  NEXTN_CHECK(launch.node_rank >= 0 && launch.node_rank < launch.nnodes, "--node-rank ", launch.node_rank,
              " is outside [0, ", launch.nnodes, ")");
  NEXTN_CHECK(launch.nnodes == 1 || launch.master_port > 0,
              "--nnodes > 1 needs --master-port (the same on every machine)");
  const int world = launch.nproc_per_node * launch.nnodes;
  const int port = launch.master_port > 0 ? launch.master_port : free_local_port();

  std::vector<pid_t> children;
  const pid_t launcher = ::getpid();
  for (int local = 0; local < launch.nproc_per_node; ++local) {
    const int rank = launch.node_rank * launch.nproc_per_node + local;
    const pid_t pid = ::fork();
    NEXTN_CHECK(pid >= 0, "cannot start rank ", rank, ": ", errno_text());
    if (pid == 0) {
      ::setpgid(0, 0);
      // A rank outlives no launcher: when it dies however it dies (SIGKILL, a closed terminal's
      // SIGHUP), each rank gets kLauncherGoneSignal, which checkpoints and stops the run (as
      // SIGTERM does, but harmless when repeated: training/stop_signal.h), instead of training on
      // unseen beside whatever the user starts next. (The launcher may already be gone.)
      ::prctl(PR_SET_PDEATHSIG, kLauncherGoneSignal);
      if (::getppid() != launcher) ::_exit(128 + SIGTERM);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(launch.nproc_per_node).c_str(), 1);
      ::setenv("MASTER_ADDR", launch.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("NEXTN_LAUNCHER", "nextn", 1);  // names the launcher in logs (the variables are torchrun's)
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv("/proc/self/exe", args.data());
      std::cerr << "nextn: cannot start rank " << rank << ": " << errno_text() << "\n";
      ::_exit(127);
    }
    children.push_back(pid);
  }

  struct sigaction forward {};
  forward.sa_handler = remember_signal;
  sigemptyset(&forward.sa_mask);
  struct sigaction old_int {}, old_term {}, old_hup {};
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);
  ::sigaction(SIGHUP, &forward, &old_hup);  // a closed terminal stops the ranks as SIGTERM does

  std::vector<bool> running(children.size(), true);
  size_t alive = children.size();
  int result = 0;
  std::chrono::steady_clock::time_point failed_at{};
  bool terminated = false;
  while (alive > 0) {
    if (int s = g_forward_signal.exchange(0); s != 0) {
      if (s == SIGHUP) s = SIGTERM;  // the ranks checkpoint and stop on SIGINT and SIGTERM
      for (size_t i = 0; i < children.size(); ++i) {
        if (running[i]) ::kill(children[i], s);
      }
    }
    for (size_t i = 0; i < children.size(); ++i) {
      if (!running[i]) continue;
      int status = 0;
      if (::waitpid(children[i], &status, WNOHANG) != children[i]) continue;
      running[i] = false;
      --alive;
      if (status_code(status) != 0 && result == 0) {
        result = status_code(status);
        failed_at = std::chrono::steady_clock::now();
        std::cerr << "nextn: rank " << launch.node_rank * launch.nproc_per_node + static_cast<int>(i) << " "
                  << exit_text(status) << "\n";
      }
    }
    if (result != 0 && alive > 0) {
      const auto waited = std::chrono::steady_clock::now() - failed_at;
      const bool kill_now = waited > launch.grace + std::chrono::seconds(3);
      if (kill_now || (!terminated && waited > launch.grace)) {
        for (size_t i = 0; i < children.size(); ++i) {
          if (!running[i]) continue;
          if (!terminated) {
            std::cerr << "nextn: stopping rank " << launch.node_rank * launch.nproc_per_node + static_cast<int>(i)
                      << " (another rank failed)\n";
          }
          ::kill(children[i], kill_now ? SIGKILL : SIGTERM);
        }
        terminated = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  return result;
}

}  // namespace nextn::dist

// Distributed training end to end through the nextn command, 2 ranks over loopback, against one
// process on the same global batch: data parallel (both MTP kinds) and expert parallel runs give
// the same per-step losses and the same expert biases at every step and end at the same weights;
// checkpoints reshard (2 ranks -> 1 process, 1 -> 2); a rank killed under torchrun with a restart
// allowed ends in the uninterrupted run; a lost or hung rank is named; bad set-ups are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <signal.h>
#include <unistd.h>

#include "nextn/distributed/local_launcher.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/safetensors.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/run_lock.h"
#include "test_support.h"
#include "training/tiny_corpus.h"

namespace nextn {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr int kSteps = 20;

// A config of the tiny preset for the tiny corpus, with the given MTP kind.
std::string write_config(const TempDir& dir, const std::string& mtp_kind, int64_t routed_experts = 8) {
  ModelConfig c = testing::tiny_training_config();
  c.mtp_kind = mtp_kind_from_string(mtp_kind);
  if (routed_experts != c.n_routed_experts) {
    c.n_routed_experts = routed_experts;
    c.n_group = 1;
    c.topk_group = 1;
    c.num_experts_per_tok = 2;
  }
  const std::string path = dir.file("tiny-" + mtp_kind + "-" + std::to_string(routed_experts) + ".json");
  save_model_config(c, path);
  return path;
}

std::string train_args(const std::string& config, const std::string& run, int64_t batch, int64_t steps = kSteps) {
  return "train --config " + config + " --data " + testing::tiny_corpus().dataset_dir + " --run " + run +
         " --steps " + std::to_string(steps) + " --batch-size " + std::to_string(batch) +
         " --seq-len 32 --warmup 2 --lr 3e-3 --eval-every 0 --eval-batches 2 --checkpoint-every 10"
         " --keep-checkpoints 5 --log-every 1 --log-experts-every 1 --threads 1";
}

struct CommandRun {
  int status = -1;
  std::string output;
};

CommandRun nextn(const std::string& args, const std::string& log_dir) {
  CommandRun r;
  r.status = testing::run_nextn(args, log_dir, r.output);
  return r;
}

// A shell command line, for launchers that wrap nextn (torchrun, hand-set environments).
CommandRun shell(const std::string& command, const std::string& log_dir) {
  CommandRun r;
  const std::string log = log_dir + "/shell.log";
  const int status = std::system((command + " > " + log + " 2>&1").c_str());
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = io::read_file(log);
  return r;
}

struct Records {
  std::map<int64_t, nlohmann::json> train, experts;
};

Records read_records(const std::string& run) {
  Records r;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "train") r.train[j["step"].get<int64_t>()] = j;
    if (j["type"] == "experts") r.experts[j["step"].get<int64_t>()] = j;
  }
  return r;
}

std::map<std::string, torch::Tensor> checkpoint(const std::string& run, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  const std::string dir = run + "/checkpoints/" + name;
  std::map<std::string, torch::Tensor> all;
  io::CheckpointShards model(dir);
  for (const auto& n : model.names()) all["model/" + n] = model.read(n);
  io::SafetensorsReader optimizer(dir + "/optimizer.safetensors");
  for (const auto& e : optimizer.entries()) {
    if (e.name != "rng.cpu_state") all["optimizer/" + e.name] = optimizer.read(e.name);
  }
  return all;
}

double relative_difference(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-12); }

// Per step: expert counts and biases identical and losses to 1e-5 relative, until the first step
// whose counts differ, which must come after step kExactSteps; returns that step (0: none). Ranks
// add their gradients in another order than one process does, so the weights differ in the last
// bits (below), and a token whose affinities for two experts are closer than that may change its
// expert. Over 20 steps of ~10^5 top-K comparisons such a tie is rare but possible (the fused
// head's rounding made the parallel-heads run meet one at step 10); from there the runs are two
// different trajectories, compared only loosely (losses to 1e-3). A real fault (a rank's rows, a
// missing all-reduce, a wrong dispatch) shows at the first steps, and by far more.
constexpr int64_t kExactSteps = 5;

int64_t expect_same_steps(const Records& got, const Records& want, int64_t first = 1) {
  int64_t diverged = 0;
  for (int64_t step = first; step <= kSteps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    if (!got.train.count(step) || !want.train.count(step) || !got.experts.count(step) || !want.experts.count(step)) {
      ADD_FAILURE() << "no record of step " << step;
      return -1;
    }
    const auto &a = got.train.at(step), &b = want.train.at(step);
    const auto &got_load = got.experts.at(step)["load"], &want_load = want.experts.at(step)["load"];
    if (diverged == 0 && got_load != want_load) {
      diverged = step;
      EXPECT_GT(step, kExactSteps) << "expert counts differ: " << got_load << " vs " << want_load;
      std::cout << "note: expert counts first differ at step " << step << " (a near tie); later steps compared loosely\n";
    }
    const double loss_tolerance = diverged ? 1e-3 : 1e-5;
    EXPECT_LT(relative_difference(a["loss"], b["loss"]), loss_tolerance);
    EXPECT_LT(relative_difference(a["main_loss"], b["main_loss"]), loss_tolerance);
    for (size_t k = 0; k < b["mtp_loss"].size(); ++k) {
      EXPECT_LT(relative_difference(a["mtp_loss"][k], b["mtp_loss"][k]), loss_tolerance);
    }
    if (!diverged) { EXPECT_EQ(got.experts.at(step)["bias"], want.experts.at(step)["bias"]); }
  }
  return diverged;
}

// Final weights and optimizer moments equal up to float rounding. Differences are measured
// against each tensor's largest element. Most elements differ by a few float32 roundings (median,
// 99.9th percentile); a handful more, because AdamW divides each element's momentum by the root of
// its second moment: a rounding difference in a gradient near zero (an embedding row seen once)
// becomes a larger difference in that element's update (up to ~1.3e-4 of the tensor's scale after
// 20 steps here). The per-step losses, expert counts and biases above are the tight checks.
void expect_same_weights(const std::string& got_run, const std::string& want_run) {
  auto got = checkpoint(got_run, kSteps), want = checkpoint(want_run, kSteps);
  ASSERT_EQ(got.size(), want.size());
  std::vector<torch::Tensor> differences;
  for (const auto& [name, tensor] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    ASSERT_EQ(got[name].sizes(), tensor.sizes()) << name;
    const double scale = std::max(tensor.abs().max().item<double>(), 1e-6);
    differences.push_back((got[name].to(torch::kDouble) - tensor.to(torch::kDouble)).abs().flatten() / scale);
  }
  auto all = torch::cat(differences);
  EXPECT_LT(all.median().item<double>(), 1e-6);
  EXPECT_LT(all.quantile(0.999).item<double>(), 1e-5);
  EXPECT_LT(all.max().item<double>(), 1e-3);
}

// The final evaluation (every rank evaluates its share, sums added over the ranks) equals one
// process's evaluation of the same windows.
void expect_same_final_evaluation(const std::string& got_run, const std::string& want_run) {
  auto final_eval = [](const std::string& run) {
    nlohmann::json last;
    std::ifstream in(run + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["type"] == "eval") last = j;
    }
    return last;
  };
  const auto got = final_eval(got_run), want = final_eval(want_run);
  ASSERT_FALSE(want.is_null());
  ASSERT_FALSE(got.is_null());
  EXPECT_EQ(got["tokens"], want["tokens"]);
  EXPECT_LT(relative_difference(got["main_loss"], want["main_loss"]), 1e-5);
  for (size_t k = 0; k < want["mtp_loss"].size(); ++k) {
    EXPECT_LT(relative_difference(got["mtp_loss"][k], want["mtp_loss"][k]), 1e-5);
  }
  EXPECT_EQ(got["max_vio_global"], want["max_vio_global"]);
}

class DistributedTraining : public ::testing::Test {
 protected:
  // One-process runs with the global batch (8 windows), made once and shared by the tests.
  static std::string reference(const std::string& mtp_kind) {
    static std::map<std::string, std::string> runs;
    static TempDir dir("dist_reference");
    if (!runs.count(mtp_kind)) {
      const std::string run = dir.file("one-process-" + mtp_kind);
      CommandRun r = nextn(train_args(write_config(dir, mtp_kind), run, 8), dir.path());
      EXPECT_EQ(r.status, 0) << r.output;
      runs[mtp_kind] = run;
    }
    return runs[mtp_kind];
  }
};

TEST_F(DistributedTraining, DataParallelEqualsOneProcessOnTheGlobalBatch) {
  for (const std::string kind : {"sequential", "parallel"}) {
    SCOPED_TRACE(kind);
    TempDir dir("dist_dp");
    const std::string run = dir.file("two-ranks");
    CommandRun r = nextn(train_args(write_config(dir, kind), run, 4) + " --nproc-per-node 2", dir.path());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("2 ranks (gloo, nextn), data parallel 2 x expert parallel 1"), std::string::npos)
        << r.output;
    Records got = read_records(run);
    if (expect_same_steps(got, read_records(reference(kind))) == 0) {
      expect_same_weights(run, reference(kind));
      expect_same_final_evaluation(run, reference(kind));
    }
    // The step records say what the collectives moved.
    const auto& last = got.train.at(kSteps);
    EXPECT_EQ(last["ranks"], 2);
    EXPECT_GT(last["collectives"]["all_reduce"]["bytes"].get<int64_t>(), 0);
    EXPECT_GE(last["step_seconds"].get<double>(), last["comm_seconds"].get<double>());
  }
}

// 2 ranks expert parallel (E = W: no other rank holds the same experts), and 4 ranks as 2
// data-parallel groups of 2 expert-parallel ranks (expert gradients all-reduced between the
// ranks holding the same experts).
TEST_F(DistributedTraining, ExpertParallelEqualsOneProcessOnTheGlobalBatch) {
  TempDir dir("dist_ep");
  const std::string config = write_config(dir, "sequential");
  struct Shape {
    int ranks;
    int64_t batch;
    std::string layout;
  };
  for (const Shape& shape : {Shape{2, 4, "data parallel 1 x expert parallel 2"},
                             Shape{4, 2, "data parallel 2 x expert parallel 2"}}) {
    SCOPED_TRACE(shape.layout);
    const std::string run = dir.file("ep-" + std::to_string(shape.ranks));
    CommandRun r = nextn(train_args(config, run, shape.batch) + " --nproc-per-node " + std::to_string(shape.ranks) +
                             " --expert-parallel 2",
                         dir.path());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(shape.layout), std::string::npos) << r.output;
    Records got = read_records(run);
    if (expect_same_steps(got, read_records(reference("sequential"))) == 0) {
      expect_same_weights(run, reference("sequential"));
      expect_same_final_evaluation(run, reference("sequential"));
    }
    EXPECT_GT(got.train.at(kSteps)["collectives"]["all_to_all"]["bytes"].get<int64_t>(), 0);
    EXPECT_GT(got.train.at(kSteps)["all_to_all_bytes_per_token"].get<double>(), 0.0);
  }
  // The gathered checkpoint is an ordinary model directory: one process generates from it.
  CommandRun generated = nextn("generate --model " + dir.file("ep-2") + " --prompt 'def' --max-new-tokens 4 --greedy",
                               dir.path());
  EXPECT_EQ(generated.status, 0) << generated.output;
}

// A job stopped after its step-10 checkpoint (rank 0 killed before step 11), resumed by a job of
// another shape: it continues the same run.
TEST_F(DistributedTraining, CheckpointsReshardBetweenWorldSizes) {
  TempDir dir("dist_reshard");
  const std::string config = write_config(dir, "sequential");
  struct Shape {
    std::string name, first, second;
    int64_t first_batch;
  };
  for (const Shape& shape : {Shape{"2-to-1", " --nproc-per-node 2 --expert-parallel 2", "", 4},
                             Shape{"1-to-2", "", " --nproc-per-node 2 --expert-parallel 2", 8}}) {
    SCOPED_TRACE(shape.name);
    const std::string run = dir.file(shape.name);
    CommandRun killed = nextn(train_args(config, run, shape.first_batch) + shape.first + " --inject-fault 0:11:KILL",
                       dir.path());
    ASSERT_NE(killed.status, 0) << killed.output;
    ASSERT_TRUE(fs::exists(run + "/checkpoints/step-00000010")) << killed.output;
    ASSERT_FALSE(fs::exists(run + "/checkpoints/step-00000020"));
    CommandRun resumed = nextn("train --run " + run + " --resume --threads 1 --dist-timeout 60" + shape.second, dir.path());
    ASSERT_EQ(resumed.status, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("keeps the global batch of 8 windows"), std::string::npos) << resumed.output;
    if (expect_same_steps(read_records(run), read_records(reference("sequential"))) == 0) {
      expect_same_weights(run, reference("sequential"));
    }
  }
}

// torchrun with one restart allowed: rank 1 is SIGKILLed before step 11; torchrun restarts the
// job, which resumes from step 10 and ends where the uninterrupted two-rank run ends, bit for bit.
TEST_F(DistributedTraining, ARankKilledUnderTorchrunRestartsIntoTheSameRun) {
  TempDir dir("dist_torchrun");
  const std::string config = write_config(dir, "sequential");
  const std::string torchrun = "torchrun --standalone --nproc_per_node 2 --max_restarts 1 --monitor_interval 1 "
                               "--redirects 1 --tee 1 --no_python " + std::string(NEXTN_BINARY_PATH) + " ";
  const std::string plain = dir.file("uninterrupted"), restarted = dir.file("restarted");
  CommandRun a = shell(torchrun + train_args(config, plain, 4), dir.path());
  ASSERT_EQ(a.status, 0) << a.output;
  CommandRun b = shell(torchrun + train_args(config, restarted, 4) + " --inject-fault 1:11:KILL", dir.path());
  ASSERT_EQ(b.status, 0) << b.output;
  EXPECT_NE(b.output.find("restart 1 of the job: resuming"), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("resuming from"), std::string::npos) << b.output;
  auto got = checkpoint(restarted, kSteps), want = checkpoint(plain, kSteps);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, tensor] : want) EXPECT_TRUE(torch::equal(got.at(name), tensor)) << name;
  Records got_records = read_records(restarted), want_records = read_records(plain);
  for (int64_t step = 1; step <= kSteps; ++step) {
    EXPECT_EQ(got_records.train.at(step)["loss"], want_records.train.at(step)["loss"]) << "step " << step;
  }
}

TEST_F(DistributedTraining, ALostRankIsNamedByTheOthers) {
  TempDir dir("dist_lost");
  const std::string config = write_config(dir, "sequential");
  CommandRun killed = nextn(train_args(config, dir.file("killed"), 4) + " --nproc-per-node 2 --inject-fault 1:3:SIGKILL",
                     dir.path());
  EXPECT_NE(killed.status, 0);
  EXPECT_NE(killed.output.find("rank 0: "), std::string::npos) << killed.output;
  EXPECT_NE(killed.output.find("lost rank 1"), std::string::npos) << killed.output;
  EXPECT_NE(killed.output.find("rank 1 was killed by signal"), std::string::npos) << killed.output;
  // A rank that hangs: the others time out and name it (its heartbeat stopped too).
  CommandRun hung = nextn(train_args(config, dir.file("hung"), 4) +
                       " --nproc-per-node 2 --inject-fault 1:3:STOP --dist-timeout 3",
                   dir.path());
  EXPECT_NE(hung.status, 0);
  EXPECT_NE(hung.output.find("lost rank 1"), std::string::npos) << hung.output;
  // Rank 0 hangs: it serves the rendezvous store, whose requests now never return; the others
  // still time out, name it and exit.
  CommandRun hung_root = nextn(train_args(config, dir.file("hung-root"), 4) +
                                   " --nproc-per-node 2 --inject-fault 0:3:STOP --dist-timeout 3",
                               dir.path());
  EXPECT_NE(hung_root.status, 0);
  EXPECT_NE(hung_root.output.find("rank 1: "), std::string::npos) << hung_root.output;
  EXPECT_NE(hung_root.output.find("lost rank 0"), std::string::npos) << hung_root.output;
}

// The process ids of a process's children (Linux: /proc/PID/task/PID/children).
std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> children;
  for (pid_t child; in >> child;) children.push_back(child);
  return children;
}

// Gone, or a zombie nobody reaped yet: it runs no more.
bool has_ended(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return true;
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && (stat[close + 2] == 'Z' || stat[close + 2] == 'X');
}

// A run has one writer: a second job on a run directory being trained is refused; and the ranks
// of a launcher that dies (SIGKILL here; a closed terminal's SIGHUP likewise) stop with it
// instead of training on as orphans.
TEST_F(DistributedTraining, RanksDieWithTheirLauncherAndARunHasOneWriter) {
  TempDir dir("dist_orphans");
  const std::string config = write_config(dir, "sequential");
  const std::string run = dir.file("run");
  const std::string log = dir.file("launcher.log");
  const std::string pid_text = dir.file("launcher.pid");
  const std::string command = std::string(NEXTN_BINARY_PATH) + " " + train_args(config, run, 4, 100000) +
                              " --nproc-per-node 2 > " + log + " 2>&1 & echo $! > " + pid_text;
  ASSERT_EQ(std::system(command.c_str()), 0);
  const pid_t launcher = std::stoi(io::read_file(pid_text));
  std::vector<pid_t> ranks;
  for (int i = 0; i < 1200 && !fs::exists(run + "/metrics.jsonl"); ++i) ::usleep(100000);
  for (int i = 0; i < 1200 && read_records(run).train.empty(); ++i) ::usleep(100000);
  ranks = children_of(launcher);
  ASSERT_EQ(ranks.size(), 2u) << io::read_file(log);

  CommandRun second = nextn(train_args(config, run, 4, 100000) + " --resume", dir.path());
  EXPECT_NE(second.status, 0);
  const bool names_rank_zero = second.output.find("is in use: nextn pid " + std::to_string(ranks[0])) != std::string::npos ||
                              second.output.find("is in use: nextn pid " + std::to_string(ranks[1])) != std::string::npos;
  EXPECT_TRUE(names_rank_zero) << second.output;

  ::kill(launcher, SIGKILL);
  for (int i = 0; i < 600 && !(has_ended(ranks[0]) && has_ended(ranks[1])); ++i) ::usleep(100000);
  EXPECT_TRUE(has_ended(ranks[0]) && has_ended(ranks[1])) << "the ranks train on without their launcher";
  // They stopped as on SIGTERM (rank 0 says so in the output they share with the launcher) with a
  // checkpoint, and the directory is free again.
  for (int i = 0; i < 100 && io::read_file(log).find("stopped by signal") == std::string::npos; ++i) ::usleep(100000);
  const std::string said = io::read_file(log);
  EXPECT_TRUE(said.find("stopped by signal 12 (the launcher is gone)") != std::string::npos ||
              said.find("stopped by signal (on another rank)") != std::string::npos) << said;
  EXPECT_TRUE(latest_run_checkpoint(run).has_value());
  EXPECT_NO_THROW(RunDirectoryLock{run});
}

// The variables of Slurm's srun and Open MPI's mpirun, set by hand, start a job as torchrun's do.
TEST_F(DistributedTraining, SlurmAndOpenMpiVariablesStartAJob) {
  TempDir dir("dist_launchers");
  const std::string config = write_config(dir, "sequential");
  const std::string binary = std::string(NEXTN_BINARY_PATH) + " ";
  struct Launcher {
    std::string name, rank_variable, common;
  };
  for (const Launcher& l : {Launcher{"slurm", "SLURM_PROCID", "SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=2 SLURM_STEP_ID=0"},
                            Launcher{"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE=2"}}) {
    SCOPED_TRACE(l.name);
    const std::string env = l.common + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(dist::free_local_port());
    const std::string args = train_args(config, dir.file(l.name), 4, 3);
    CommandRun r = shell("(" + l.rank_variable + "=0 " + env + " " + binary + args + " & first=$!; " + l.rank_variable +
                             "=1 " + env + " " + binary + args + "; second=$?; wait $first; exit $(( $? | second )))",
                         dir.path());
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("2 ranks (gloo, " + l.name + ")"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(dir.file(l.name) + "/checkpoints/step-00000003")) << r.output;
  }
}

// Two machines are MASTER_ADDR apart: two network namespaces joined by a virtual Ethernet pair
// (10.77.x.1 and .2), one rank in each, nextn's launcher on both with --nnodes 2. Needs root (to
// make namespaces); skipped where the sandbox refuses them.
TEST_F(DistributedTraining, TwoMachinesAreMasterAddrApart) {
  TempDir dir("dist_two_hosts");
  const std::string tag = std::to_string(::getpid() % 100000);
  const std::string a = "nextn" + tag + "a", b = "nextn" + tag + "b", subnet = "10.77." + std::to_string(::getpid() % 250);
  const std::string setup = "ip netns add " + a + " && ip netns add " + b + " && ip link add v" + tag +
                            "a type veth peer name v" + tag + "b && ip link set v" + tag + "a netns " + a +
                            " && ip link set v" + tag + "b netns " + b + " && ip -n " + a + " addr add " + subnet +
                            ".1/24 dev v" + tag + "a && ip -n " + b + " addr add " + subnet + ".2/24 dev v" + tag +
                            "b && ip -n " + a + " link set v" + tag + "a up && ip -n " + b + " link set v" + tag +
                            "b up && ip -n " + a + " link set lo up && ip -n " + b + " link set lo up";
  if (shell(setup, dir.path()).status != 0) {
    shell("ip netns del " + a + "; ip netns del " + b, dir.path());
    GTEST_SKIP() << "network namespaces are not available here (needs root and iproute2)";
  }
  const std::string config = write_config(dir, "sequential");
  const std::string args = train_args(config, dir.file("two-hosts"), 4, 3) + " --dist-timeout 30" +
                           " --nproc-per-node 1 --nnodes 2 --master-addr " + subnet + ".1 --master-port 29555";
  const std::string binary = std::string(NEXTN_BINARY_PATH) + " ";
  CommandRun r = shell("(ip netns exec " + a + " " + binary + args + " --node-rank 0 & first=$!; ip netns exec " + b +
                           " " + binary + args + " --node-rank 1; second=$?; wait $first; exit $(( $? | second )))",
                       dir.path());
  shell("ip netns del " + a + "; ip netns del " + b, dir.path());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("2 ranks (gloo, nextn)"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir.file("two-hosts") + "/checkpoints/step-00000003")) << r.output;
}

TEST_F(DistributedTraining, BadSetupsAreRefusedBeforeAnyWork) {
  TempDir dir("dist_bad");
  const std::string config = write_config(dir, "sequential");
  auto expect_refusal = [&](const CommandRun& r, const std::string& fragment) {
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step 1/"), std::string::npos) << "trained although refused:\n" << r.output;
  };
  expect_refusal(nextn(train_args(config, dir.file("e3"), 4) + " --nproc-per-node 2 --expert-parallel 3", dir.path()),
                 "--expert-parallel 3 does not divide the world size 2");
  expect_refusal(nextn(train_args(write_config(dir, "sequential", 5), dir.file("e5"), 4) +
                           " --nproc-per-node 2 --expert-parallel 2",
                       dir.path()),
                 "--expert-parallel 2 does not divide n_routed_experts 5");
  // Two ranks started by hand with different seeds.
  const int port = dist::free_local_port();
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
  const std::string binary = std::string(NEXTN_BINARY_PATH) + " ";
  expect_refusal(shell("(RANK=0 " + env + " " + binary + train_args(config, dir.file("seeds"), 4) + " --seed 1 & " +
                           "first=$!; RANK=1 " + env + " " + binary + train_args(config, dir.file("seeds"), 4) +
                           " --seed 2; second=$?; wait $first; exit $(( $? | second )))",
                       dir.path()),
                 "rank 1's training option 'seed' differs from rank 0's");
  // ... and with different expert-parallel layouts: refused at once, not after the timeout.
  const std::string env2 = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(dist::free_local_port());
  expect_refusal(shell("(RANK=0 " + env2 + " " + binary + train_args(config, dir.file("layouts"), 4) +
                           " --expert-parallel 2 & first=$!; RANK=1 " + env2 + " " + binary +
                           train_args(config, dir.file("layouts"), 4) +
                           "; second=$?; wait $first; exit $(( $? | second )))",
                       dir.path()),
                 "runs with --expert-parallel");
  // A rank that never starts: named, not a socket timeout of the first process group.
  expect_refusal(shell("RANK=0 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(dist::free_local_port()) +
                           " " + binary + train_args(config, dir.file("missing"), 4) + " --dist-timeout 2",
                       dir.path()),
                 "ranks 1, 2 of 3 did not join the rendezvous");
  // Ranks 0 and 1 of 3: both name rank 2, and only rank 2 (rank 0 counted itself in at once).
  const std::string env3 = "WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(dist::free_local_port());
  const CommandRun two_of_three =
      shell("(RANK=0 " + env3 + " " + binary + train_args(config, dir.file("two"), 4) + " --dist-timeout 3 & first=$!; " +
                "RANK=1 " + env3 + " " + binary + train_args(config, dir.file("two"), 4) +
                " --dist-timeout 3; second=$?; wait $first; exit $(( $? | second )))",
            dir.path());
  expect_refusal(two_of_three, "rank 0: rank 2 of 3 did not join the rendezvous");
  // Rank 1 names rank 2 too, or, when rank 0 gave up and left first, says so.
  EXPECT_TRUE(two_of_three.output.find("rank 1: rank 2 of 3 did not join") != std::string::npos ||
              two_of_three.output.find("rank 1: lost rank 0") != std::string::npos)
      << two_of_three.output;
  EXPECT_EQ(two_of_three.output.find("ranks 0"), std::string::npos) << two_of_three.output;
  // Nobody serves the rendezvous.
  expect_refusal(shell("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(dist::free_local_port()) +
                           " " + binary + train_args(config, dir.file("alone"), 4) + " --dist-timeout 2",
                       dir.path()),
                 "could not reach the rendezvous at 127.0.0.1:");
}

}  // namespace
}  // namespace nextn

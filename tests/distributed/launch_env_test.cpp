// The launch variables of torchrun, Open MPI and Slurm, and what a malformed one gives.
#include <gtest/gtest.h>

#include <map>

#include "nextn/distributed/launch_env.h"
#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

LaunchEnv detect(const std::map<std::string, std::string>& vars) {
  return detect_launch_env([&](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

void expect_error(const std::map<std::string, std::string>& vars, const std::string& fragment) {
  try {
    detect(vars);
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(LaunchEnv, NoLauncherIsAJobOfOne) {
  LaunchEnv env = detect({});
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.launcher, "none");
}

TEST(LaunchEnv, Torchrun) {
  LaunchEnv env = detect({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                          {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "29511"}, {"TORCHELASTIC_RESTART_COUNT", "1"}});
  EXPECT_TRUE(env.distributed());
  EXPECT_EQ(env.launcher, "torchrun");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "10.0.0.7");
  EXPECT_EQ(env.master_port, 29511);
  EXPECT_EQ(env.restart_count, 1);
}

TEST(LaunchEnv, NextnsOwnLauncherSetsTorchrunsVariables) {
  LaunchEnv env = detect({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"NEXTN_LAUNCHER", "nextn"}});
  EXPECT_EQ(env.launcher, "nextn");
  EXPECT_EQ(env.rank, 1);
}

TEST(LaunchEnv, TorchrunDefaultsOnOneMachine) {
  LaunchEnv env = detect({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  EXPECT_EQ(env.master_port, kDefaultMasterPort);
}

TEST(LaunchEnv, OpenMpi) {
  LaunchEnv env = detect({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                          {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                          {"MASTER_ADDR", "node0"}});
  EXPECT_EQ(env.launcher, "openmpi");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.master_addr, "node0");
}

TEST(LaunchEnv, Slurm) {
  LaunchEnv env = detect({{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"SLURM_STEP_ID", "0"},
                          {"SLURM_NTASKS_PER_NODE", "2(x2)"}, {"SLURM_LAUNCH_NODE_IPADDR", "192.168.1.10"}});
  EXPECT_EQ(env.launcher, "slurm");
  EXPECT_EQ(env.rank, 2);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "192.168.1.10");
  // MASTER_ADDR, when the job script sets it, wins.
  EXPECT_EQ(detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LAUNCH_NODE_IPADDR", "192.168.1.10"},
                    {"SLURM_STEPID", "3"}, {"MASTER_ADDR", "10.1.1.1"}})
                .master_addr,
            "10.1.1.1");
}

TEST(LaunchEnv, SlurmWithoutSrunIsAJobOfOne) {
  // An sbatch script's own environment (or an salloc shell's): the allocation's task count and
  // SLURM_PROCID=0, but no job step; srun would set SLURM_STEP_ID.
  LaunchEnv env = detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"},
                          {"SLURM_NTASKS_PER_NODE", "4"}, {"SLURM_JOB_ID", "200505"}});
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.launcher, "none");
  EXPECT_NE(env.note.find("4 tasks, but this process was not started by srun"), std::string::npos) << env.note;
  EXPECT_TRUE(detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}).note.empty());  // nothing to explain
}

TEST(LaunchEnv, TorchrunWinsOverSlurm) {
  // torchrun inside an srun allocation: its own variables describe the job.
  LaunchEnv env = detect({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(env.launcher, "torchrun");
  EXPECT_EQ(env.world_size, 2);
}

TEST(LaunchEnv, MalformedVariablesAreNamed) {
  expect_error({{"RANK", "one"}, {"WORLD_SIZE", "2"}}, "RANK='one' is not an integer");
  expect_error({{"RANK", "2"}, {"WORLD_SIZE", "2"}}, "RANK=2 is outside [0, 1]");
  expect_error({{"RANK", "0"}}, "WORLD_SIZE is not set");
  expect_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}, "MASTER_PORT=70000 is outside");
  expect_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500x"}}, "MASTER_PORT='29500x'");
  expect_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", ""}}, "MASTER_ADDR is empty");
  expect_error({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}}, "MASTER_ADDR is not set");
  expect_error({{"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK is not set");
  expect_error({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_ID", "0"}, {"SLURM_NTASKS_PER_NODE", "x"}},
               "SLURM_NTASKS_PER_NODE");
}

}  // namespace
}  // namespace nextn::dist

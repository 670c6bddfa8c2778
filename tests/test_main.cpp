// Shared main for every test executable: one thread (libtorch and BLAS) keeps results
// reproducible and lets ctest run test executables side by side on a small machine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "nextn/util/runtime_info.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  nextn::set_cpu_threads(1, 1);
  return RUN_ALL_TESTS();
}

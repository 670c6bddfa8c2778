// The operator profiler: counts outermost operators, names backward nodes readably.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "nextn/util/op_profiler.h"

namespace nextn {
namespace {

TEST(OpProfiler, CountsOutermostOperatorsAndNamesBackwardNodes) {
  auto a = torch::randn({4, 3}).requires_grad_(true);
  auto b = torch::randn({3, 5});
  std::string report;
  {
    OpProfiler profiler;
    for (int i = 0; i < 3; ++i) torch::mm(a, b).sum().backward();
    auto stats = profiler.snapshot();
    ASSERT_TRUE(stats.count("aten::mm"));
    EXPECT_EQ(stats.at("aten::mm").calls, 3);  // the products only: nothing nested inside counts
    report = profiler.report(50, 3.0, "step");
  }
  EXPECT_NE(report.find("calls/step"), std::string::npos) << report;
  EXPECT_NE(report.find("backward: MmBackward0"), std::string::npos) << report;
  EXPECT_EQ(report.find("autograd::engine::evaluate_function"), std::string::npos) << report;
  // aten::mm: 3 calls over 3 steps, 1.0 per step.
  const auto row = report.substr(report.find("aten::mm "));
  EXPECT_NE(row.substr(0, row.find('\n')).find(" 1.0 "), std::string::npos) << report;
}

}  // namespace
}  // namespace nextn

// Device names: what is accepted, and that CUDA on a machine without it is a clear error.
#include <gtest/gtest.h>

#include "nextn/compat/torch_compat.h"
#include "nextn/device/device.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

std::string error_of(const std::string& name) {
  try {
    resolve_device(name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Device, CpuIsAlwaysThere) {
  EXPECT_EQ(resolve_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_EQ(training_precision(torch::Device(torch::kCPU)), "fp32");
}

TEST(Device, BadNamesAreErrorsNamingThem) {
  EXPECT_NE(error_of("gpu").find("unknown device 'gpu'"), std::string::npos) << error_of("gpu");
  EXPECT_NE(error_of("cuda:x").find("GPU index must be a number"), std::string::npos) << error_of("cuda:x");
  EXPECT_NE(error_of("cuda:").find("GPU index must be a number"), std::string::npos);
}

TEST(Device, CudaWithoutAGpuIsAClearError) {
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(resolve_device("cuda").is_cuda());
    EXPECT_NE(error_of("cuda:999").find("indices from 0"), std::string::npos);
  } else {
    EXPECT_NE(error_of("cuda").find("CUDA is not available"), std::string::npos) << error_of("cuda");
    EXPECT_NE(error_of("cuda:0").find("CUDA is not available"), std::string::npos);
  }
}

TEST(Device, CpuTrainingPrecisionLeavesAutocastOff) {
  const bool before = compat::cuda_autocast_enabled();
  {
    TrainingPrecisionScope scope(torch::Device(torch::kCPU));
    EXPECT_EQ(compat::cuda_autocast_enabled(), before);
    auto a = torch::randn({4, 4});
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);
  }
  EXPECT_EQ(compat::cuda_autocast_enabled(), before);
}

TEST(Device, CudaAutocastScopeNestsAndRestores) {
  // The compat functions only flip thread-local flags, so they can be checked without a GPU.
  EXPECT_FALSE(compat::cuda_autocast_enabled());
  compat::enter_cuda_autocast(torch::kBFloat16);
  EXPECT_TRUE(compat::cuda_autocast_enabled());
  compat::enter_cuda_autocast(torch::kBFloat16);
  compat::exit_cuda_autocast(true);
  EXPECT_TRUE(compat::cuda_autocast_enabled());
  compat::exit_cuda_autocast(false);
  EXPECT_FALSE(compat::cuda_autocast_enabled());
  // CPU tensors are not affected by CUDA autocast.
  compat::enter_cuda_autocast(torch::kBFloat16);
  auto a = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);
  compat::exit_cuda_autocast(false);
}

}  // namespace
}  // namespace nextn

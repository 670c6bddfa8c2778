// Device names: what is accepted, and that CUDA on a machine without it is a clear error; the
// training precision scopes.
#include <gtest/gtest.h>

#include "nextn/compat/torch_compat.h"
#include "nextn/device/device.h"
#include "nextn/device/precision.h"
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

TEST(Precision, NamesRoundTripAndBadOnesAreNamed) {
  EXPECT_EQ(precision_from_string("fp32"), Precision::kFp32);
  EXPECT_EQ(precision_from_string("bf16"), Precision::kBf16);
  EXPECT_EQ(to_string(Precision::kBf16), "bf16");
  EXPECT_EQ(default_precision(torch::Device(torch::kCPU)), Precision::kFp32);
  try {
    precision_from_string("fp16");
    ADD_FAILURE() << "fp16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown precision 'fp16'"), std::string::npos) << e.what();
  }
}

TEST(Precision, Fp32ScopeLeavesProductsInFp32) {
  TrainingPrecisionScope scope(torch::Device(torch::kCPU), Precision::kFp32);
  EXPECT_FALSE(compat::autocast_enabled(at::kCPU));
  auto a = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);
  EXPECT_EQ(product_dtype(a), torch::kFloat);
}

TEST(Precision, Bf16ScopeTakesProductsToBf16AndRestores) {
  torch::manual_seed(1);
  auto a = torch::randn({8, 16}), b = torch::randn({16, 4});
  // What a bf16 product computes: the operands rounded to bf16, then the product.
  auto expected = torch::mm(a.to(torch::kBFloat16).to(torch::kDouble), b.to(torch::kBFloat16).to(torch::kDouble));
  {
    TrainingPrecisionScope scope(torch::Device(torch::kCPU), Precision::kBf16);
    EXPECT_TRUE(compat::autocast_enabled(at::kCPU));
    auto c = torch::mm(a, b);
    EXPECT_EQ(c.scalar_type(), torch::kBFloat16);
    // Its result rounded to bf16 once (8 bits of mantissa: 2^-8 relative, with margin).
    EXPECT_LE((c.to(torch::kDouble) - expected).abs().max().item<double>(),
              expected.abs().max().item<double>() * 8e-3);
    EXPECT_EQ(product_dtype(a), torch::kBFloat16);
    EXPECT_EQ(product_dtype(torch::zeros({2}, torch::kLong)), torch::kLong);
    {
      FullPrecisionScope fp32;
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
      EXPECT_EQ(product_dtype(a), torch::kFloat);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      TrainingPrecisionScope inner(torch::Device(torch::kCPU), Precision::kBf16);
    }
    EXPECT_TRUE(compat::autocast_enabled(at::kCPU)) << "leaving a nested scope must keep the outer one";
  }
  EXPECT_FALSE(compat::autocast_enabled(at::kCPU));
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
}

TEST(Precision, CudaAutocastScopeNestsAndRestores) {
  // The compat functions only flip thread-local flags, so they can be checked without a GPU.
  EXPECT_FALSE(compat::autocast_enabled(at::kCUDA));
  compat::enter_autocast(at::kCUDA, torch::kBFloat16);
  EXPECT_TRUE(compat::autocast_enabled(at::kCUDA));
  compat::enter_autocast(at::kCUDA, torch::kBFloat16);
  compat::exit_autocast(at::kCUDA, true);
  EXPECT_TRUE(compat::autocast_enabled(at::kCUDA));
  compat::exit_autocast(at::kCUDA, false);
  EXPECT_FALSE(compat::autocast_enabled(at::kCUDA));
  // CPU tensors are not affected by CUDA autocast.
  compat::enter_autocast(at::kCUDA, torch::kBFloat16);
  auto a = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);
  EXPECT_EQ(product_dtype(a), torch::kFloat);
  compat::exit_autocast(at::kCUDA, false);
}

}  // namespace
}  // namespace nextn

// nextn's files read by an independent Python implementation (struct + json + torch.frombuffer,
// tests/io/safetensors_interop.py), and that implementation's files read by nextn.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

#include "io_test_util.h"
#include "nextn/io/safetensors.h"

namespace nextn::io {
namespace {

// Must match expected_tensors() in safetensors_interop.py.
std::vector<NamedTensor> interop_tensors() {
  const torch::Tensor base = torch::arange(-6, 6, torch::kInt64).reshape({3, 4});
  const std::vector<std::pair<const char*, torch::Dtype>> dtypes = {
      {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16}, {"F64", torch::kFloat64},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},     {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool},   {"C64", torch::kComplexFloat}};
  std::vector<NamedTensor> tensors;
  for (const auto& [name, dtype] : dtypes) {
    torch::Tensor t;
    if (dtype == torch::kBool) {
      t = base.remainder(3).eq(0);
    } else if (dtype == torch::kComplexFloat) {
      t = torch::complex(base.to(torch::kFloat32), base.to(torch::kFloat32) * -0.25);
    } else if (c10::isFloatingType(dtype)) {
      t = (base.to(torch::kFloat64) * 0.5).to(dtype);
    } else if (dtype == torch::kUInt8) {
      t = (base + 6).to(dtype);
    } else {
      t = base.to(dtype);
    }
    tensors.push_back({cat("t.", name), t});
  }
  tensors.push_back({"scalar", torch::tensor(3.25, torch::kFloat64)});
  tensors.push_back({"empty", torch::empty({2, 0}, torch::kInt32)});
  return tensors;
}

TEST(SafetensorsPythonInterop, AnIndependentPythonImplementationAgrees) {
  const std::string python = "/usr/bin/python3";
  if (!std::filesystem::exists(python)) GTEST_SKIP() << python << " not found";
  test::ScratchDir dir;
  const std::string from_nextn = dir.file("from_nextn.safetensors");
  const std::string from_python = dir.file("from_python.safetensors");
  const std::string log = dir.file("python.log");
  const auto tensors = interop_tensors();
  write_safetensors(from_nextn, tensors, {{"writer", "nextn"}, {"ünïcode", "✓"}});

  const std::string script = std::string(NEXTN_SOURCE_DIR) + "/tests/io/safetensors_interop.py";
  const std::string command = cat(python, " '", script, "' '", from_nextn, "' '", from_python, "' > '", log, "' 2>&1");
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << command;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "python3 has no torch";
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the Python reader rejected nextn's file:\n" << test::read_raw_file(log);

  SafetensorsReader reader(from_python);
  EXPECT_EQ(reader.metadata(), (std::map<std::string, std::string>{{"writer", "python"}}));
  ASSERT_EQ(reader.entries().size(), tensors.size());
  for (const NamedTensor& named : tensors) {
    torch::Tensor back = reader.read(named.name);
    EXPECT_EQ(back.scalar_type(), named.tensor.scalar_type()) << named.name;
    EXPECT_EQ(back.sizes(), named.tensor.sizes()) << named.name;
    EXPECT_EQ(test::tensor_bytes(back), test::tensor_bytes(named.tensor)) << named.name;
    EXPECT_TRUE(torch::equal(back, named.tensor)) << named.name;
  }
}

}  // namespace
}  // namespace nextn::io

// The byte layout, checked independently of the writer: files assembled by hand are read, and a
// written file's bytes are compared with what the spec says they must be.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "io_test_util.h"
#include "nextn/io/safetensors.h"

namespace nextn::io {
namespace {

using test::safetensors_bytes;
using test::ScratchDir;
using test::u64_le;

// Little-endian bytes of an integer `width` bytes wide, built with shifts.
std::string le_bytes(uint64_t value, int width) {
  std::string bytes;
  for (int i = 0; i < width; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return bytes;
}

// A string literal's bytes, embedded zeros included.
template <size_t N>
std::string raw(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

TEST(SafetensorsLayout, ReadsAHandBuiltFile) {
  // Tensors listed out of offset order, the metadata last, the header padded with spaces.
  const std::string header =
      R"({"b":{"dtype":"I16","shape":[2],"data_offsets":[8,12]},)"
      R"("h":{"dtype":"F16","shape":[1],"data_offsets":[12,14]},)"
      R"("bf":{"dtype":"BF16","shape":[1,1],"data_offsets":[14,16]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"I64","shape":[],"data_offsets":[16,24]},)"
      R"("__metadata__":{"k":"v"}}   )";
  std::string data;
  data += raw("\x00\x00\x80\x3f");  // F32 1.0
  data += raw("\x00\x00\x20\xc0");  // F32 -2.5
  data += raw("\x02\x01");          // I16 258
  data += raw("\xff\xff");          // I16 -1
  data += raw("\x00\x3c");          // F16 1.0 (0x3c00)
  data += raw("\xc0\x3f");          // BF16 1.5 (0x3fc0)
  data += le_bytes(static_cast<uint64_t>(-1234567890123LL), 8);
  ASSERT_EQ(data.size(), 24u);
  ScratchDir dir;
  test::write_raw_file(dir.file("hand.safetensors"), safetensors_bytes(header, data));

  SafetensorsReader reader(dir.file("hand.safetensors"));
  ASSERT_EQ(reader.entries().size(), 5u);
  const std::vector<std::string> by_offset = {"a", "b", "h", "bf", "s"};
  for (size_t i = 0; i < by_offset.size(); ++i) EXPECT_EQ(reader.entries()[i].name, by_offset[i]);
  EXPECT_EQ(reader.metadata(), (std::map<std::string, std::string>{{"k", "v"}}));

  torch::Tensor a = reader.read("a");
  EXPECT_EQ(a.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(a, torch::tensor({1.0f, -2.5f})));
  EXPECT_TRUE(torch::equal(reader.read("b"), torch::tensor({258, -1}, torch::kInt16)));
  EXPECT_EQ(reader.read("h").item<float>(), 1.0f);
  EXPECT_EQ(reader.read("h").scalar_type(), torch::kFloat16);
  torch::Tensor bf = reader.read("bf");
  EXPECT_EQ(bf.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(bf.sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(bf.item<float>(), 1.5f);
  torch::Tensor s = reader.read("s");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<int64_t>(), -1234567890123LL);
}

TEST(SafetensorsLayout, WrittenFileHasTheSpecifiedBytes) {
  ScratchDir dir;
  const std::string path = dir.file("w.safetensors");
  write_safetensors(path,
                    {{"a", torch::arange(6, torch::kFloat32).reshape({2, 3})}, {"b", torch::tensor(7, torch::kInt64)}},
                    {{"format", "pt"}});
  const std::string bytes = test::read_raw_file(path);
  ASSERT_GE(bytes.size(), 8u);

  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(header_length % 8, 0u) << "header must be padded so the data starts 8-aligned";
  ASSERT_EQ(bytes.size(), 8 + header_length + 24 + 8);

  const std::string header = bytes.substr(8, header_length);
  const std::string expected_json =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"I64","shape":[],"data_offsets":[24,32]}})";
  EXPECT_EQ(header.substr(0, expected_json.size()), expected_json);
  EXPECT_EQ(header.substr(expected_json.size()), std::string(header_length - expected_json.size(), ' '))
      << "padding must be spaces";
  EXPECT_LT(header_length - expected_json.size(), 8u);

  std::string expected_data;
  for (int i = 0; i < 6; ++i) expected_data += le_bytes(float_bits(static_cast<float>(i)), 4);
  expected_data += le_bytes(7, 8);
  EXPECT_EQ(bytes.substr(8 + header_length), expected_data);
}

TEST(SafetensorsLayout, AcceptsUnpaddedHeadersAndUnusualOffsetsOrder) {
  // Files from older writers have unpadded headers; offsets may be listed in any order.
  const std::string header =
      R"({"second":{"dtype":"U8","shape":[3],"data_offsets":[1,4]},"first":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})";
  ScratchDir dir;
  test::write_raw_file(dir.file("u.safetensors"), safetensors_bytes(header, std::string("\x01\x05\x06\xff", 4)));
  SafetensorsReader reader(dir.file("u.safetensors"));
  EXPECT_EQ(reader.entries()[0].name, "first");
  EXPECT_TRUE(reader.read("first").item<bool>());
  EXPECT_TRUE(torch::equal(reader.read("second"), torch::tensor({5, 6, 255}, torch::kUInt8)));
}

TEST(SafetensorsLayout, ListsDtypesLibtorchLacksAndRefusesOnlyToReadThem) {
  const std::string header =
      R"({"f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},)"
      R"("f4":{"dtype":"F4","shape":[2],"data_offsets":[2,3]},)"
      R"("ok":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})";
  ScratchDir dir;
  test::write_raw_file(dir.file("f8.safetensors"), safetensors_bytes(header, std::string("\x38\xb8\x22\x09", 4)));
  SafetensorsReader reader(dir.file("f8.safetensors"));
  ASSERT_NE(reader.find("f8"), nullptr);
  EXPECT_EQ(reader.find("f8")->dtype, "F8_E4M3");
  EXPECT_EQ(reader.find("f4")->byte_size(), 1u);
  EXPECT_EQ(reader.read("ok").item<uint8_t>(), 9);
  test::expect_error([&] { reader.read("f4"); }, {"'f4'", "F4", "cannot be represented"});
  if (torch_dtype_for_safetensors("F8_E4M3").has_value()) {
    torch::Tensor f8 = reader.read("f8");  // libtorch >= 2.1: 0x38 is 1.0 and 0xb8 is -1.0 in e4m3fn
    EXPECT_TRUE(torch::equal(f8.to(torch::kFloat32), torch::tensor({1.0f, -1.0f})));
  } else {
    test::expect_error([&] { reader.read("f8"); }, {"'f8'", "F8_E4M3", "cannot be represented"});
  }
}

}  // namespace
}  // namespace nextn::io

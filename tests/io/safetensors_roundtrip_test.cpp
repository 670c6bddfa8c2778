// Writing and reading back: every dtype, scalars, empty tensors, non-contiguous inputs, metadata.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "io_test_util.h"
#include "nextn/io/safetensors.h"

namespace nextn::io {
namespace {

using test::expect_error;
using test::ScratchDir;
using test::tensor_bytes;

// Values that exercise each dtype's range: extremes, signed zero, infinities, subnormals.
torch::Tensor sample_tensor(torch::Dtype dtype, std::vector<int64_t> shape) {
  const int64_t n = c10::multiply_integers(shape);
  torch::Tensor t;
  if (dtype == torch::kBool) {
    t = torch::randint(0, 2, {n}).to(torch::kBool);
  } else if (c10::isComplexType(dtype)) {
    t = torch::complex(torch::randn({n}), torch::randn({n})).to(dtype);
  } else if (c10::isFloatingType(dtype)) {
    t = (torch::randn({n}, torch::kFloat64) * 1000).to(dtype);
    if (n >= 4) {
      t[0] = -0.0;
      t[1] = std::numeric_limits<double>::infinity();
      t[2] = -std::numeric_limits<double>::infinity();
      t[3] = std::numeric_limits<double>::denorm_min() * 1e6;
    }
  } else {
    t = torch::randint(-100, 100, {n}).to(dtype);
    if (n >= 2 && dtype == torch::kInt64) {
      t[0] = std::numeric_limits<int64_t>::min();
      t[1] = std::numeric_limits<int64_t>::max();
    }
    if (n >= 2 && dtype == torch::kUInt8) {
      t[0] = 0;
      t[1] = 255;
    }
  }
  return t.reshape(shape);
}

void expect_identical(const torch::Tensor& expected, const torch::Tensor& actual, const std::string& what) {
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  EXPECT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(actual.device().is_cpu()) << what;
  EXPECT_TRUE(actual.is_contiguous()) << what;
  EXPECT_EQ(tensor_bytes(actual), tensor_bytes(expected)) << what << ": bytes differ";
  EXPECT_TRUE(torch::equal(actual, expected)) << what << ": values differ";
}

struct DtypeCase {
  torch::Dtype dtype;
  const char* name;
};

const std::vector<DtypeCase>& dtype_cases() {
  static const std::vector<DtypeCase> cases = {
      {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"}, {torch::kBFloat16, "BF16"},
      {torch::kFloat64, "F64"}, {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
      {torch::kInt16, "I16"},   {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
      {torch::kBool, "BOOL"},   {torch::kComplexFloat, "C64"}};
  return cases;
}

TEST(SafetensorsRoundTrip, EveryDtypeKeepsBytesAndValues) {
  torch::manual_seed(1);
  ScratchDir dir;
  std::vector<NamedTensor> tensors;
  for (const DtypeCase& c : dtype_cases()) tensors.push_back({cat("t.", c.name), sample_tensor(c.dtype, {3, 5})});
  write_safetensors(dir.file("all.safetensors"), tensors);

  SafetensorsReader reader(dir.file("all.safetensors"));
  ASSERT_EQ(reader.entries().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsEntry* entry = reader.find(tensors[i].name);
    ASSERT_NE(entry, nullptr) << tensors[i].name;
    EXPECT_EQ(entry->dtype, dtype_cases()[i].name);
    EXPECT_EQ(entry->shape, (std::vector<int64_t>{3, 5}));
    EXPECT_EQ(entry->byte_size(), 15u * tensors[i].tensor.element_size());
    expect_identical(tensors[i].tensor, reader.read(tensors[i].name), tensors[i].name);
  }
}

TEST(SafetensorsRoundTrip, DtypeNamesMapBothWays) {
  for (const DtypeCase& c : dtype_cases()) {
    EXPECT_EQ(safetensors_dtype_name(c.dtype), c.name);
    EXPECT_EQ(torch_dtype_for_safetensors(c.name), c.dtype);
    EXPECT_TRUE(is_known_safetensors_dtype(c.name));
  }
  EXPECT_FALSE(is_known_safetensors_dtype("F128"));
  EXPECT_FALSE(torch_dtype_for_safetensors("F4").has_value());
  expect_error([] { safetensors_dtype_name(torch::kComplexDouble); }, {"ComplexDouble", "no safetensors"});
}

TEST(SafetensorsRoundTrip, NaNPayloadsSurviveBitExactly) {
  ScratchDir dir;
  torch::Tensor nans = torch::tensor({0x7fc00001, static_cast<int32_t>(0xffc12345), 0x7f800001}, torch::kInt32)
                           .view(torch::kFloat32);
  write_safetensors(dir.file("nan.safetensors"), {{"nans", nans}});
  EXPECT_EQ(tensor_bytes(SafetensorsReader(dir.file("nan.safetensors")).read("nans")), tensor_bytes(nans));
}

TEST(SafetensorsRoundTrip, ScalarsHaveEmptyShape) {
  ScratchDir dir;
  std::vector<NamedTensor> tensors;
  for (const DtypeCase& c : dtype_cases()) tensors.push_back({c.name, sample_tensor(c.dtype, {1}).reshape({})});
  write_safetensors(dir.file("scalars.safetensors"), tensors);
  SafetensorsReader reader(dir.file("scalars.safetensors"));
  for (const NamedTensor& named : tensors) {
    EXPECT_TRUE(reader.find(named.name)->shape.empty()) << named.name;
    torch::Tensor back = reader.read(named.name);
    EXPECT_EQ(back.dim(), 0) << named.name;
    expect_identical(named.tensor, back, named.name);
  }
}

TEST(SafetensorsRoundTrip, EmptyTensorsTakeNoBytes) {
  ScratchDir dir;
  std::vector<NamedTensor> tensors = {{"before", torch::arange(3, torch::kFloat32)},
                                      {"empty", torch::empty({0}, torch::kFloat32)},
                                      {"empty3d", torch::empty({3, 0, 2}, torch::kInt64)},
                                      {"empty_bool", torch::empty({0, 4}, torch::kBool)},
                                      {"after", torch::arange(2, torch::kInt16)}};
  write_safetensors(dir.file("empty.safetensors"), tensors);
  SafetensorsReader reader(dir.file("empty.safetensors"));
  EXPECT_EQ(reader.find("empty")->data_begin, 12u);
  EXPECT_EQ(reader.find("empty")->data_end, 12u);
  EXPECT_EQ(reader.find("empty3d")->shape, (std::vector<int64_t>{3, 0, 2}));
  EXPECT_EQ(reader.find("after")->data_begin, 12u);
  for (const NamedTensor& named : tensors) expect_identical(named.tensor, reader.read(named.name), named.name);
}

TEST(SafetensorsRoundTrip, NonContiguousInputsAreWrittenInLogicalOrder) {
  torch::manual_seed(2);
  ScratchDir dir;
  torch::Tensor base = torch::randn({4, 6});
  torch::Tensor complex = torch::randn({3}, torch::kComplexFloat);
  torch::Tensor plain = torch::randn({3});
  std::vector<NamedTensor> tensors = {
      {"transposed", base.t()},
      {"strided", base.slice(1, 0, 6, 2)},
      {"offset_view", base.narrow(0, 1, 2)},
      {"expanded", torch::arange(3, torch::kInt32).unsqueeze(0).expand({4, 3})},
      {"channels_last", torch::randn({2, 3, 4, 5}).contiguous(at::MemoryFormat::ChannelsLast)},
      {"conjugated", complex.conj()},
      {"negative_view", at::_neg_view(plain)},
  };
  for (size_t i = 0; i < 5; ++i) ASSERT_FALSE(tensors[i].tensor.is_contiguous() && i != 2) << tensors[i].name;
  ASSERT_TRUE(tensors[2].tensor.storage_offset() > 0);
  ASSERT_TRUE(tensors[5].tensor.is_conj());
  ASSERT_TRUE(tensors[6].tensor.is_neg());
  write_safetensors(dir.file("views.safetensors"), tensors);
  SafetensorsReader reader(dir.file("views.safetensors"));
  for (const NamedTensor& named : tensors) {
    torch::Tensor expected = named.tensor.resolve_conj().resolve_neg().contiguous();
    expect_identical(expected, reader.read(named.name), named.name);
  }
  // Lazy conjugate and negative views must be written resolved, not as the raw storage they share.
  EXPECT_TRUE(torch::equal(reader.read("conjugated"), torch::conj_physical(complex)));
  EXPECT_TRUE(torch::equal(reader.read("negative_view"), -plain));
}

TEST(SafetensorsRoundTrip, EntriesFollowWritingOrderAndFindMissesCleanly) {
  ScratchDir dir;
  write_safetensors(dir.file("order.safetensors"), {{"z", torch::ones({2})}, {"a", torch::ones({3}, torch::kInt8)},
                                                    {"m", torch::ones({1}, torch::kFloat64)}});
  SafetensorsReader reader(dir.file("order.safetensors"));
  ASSERT_EQ(reader.entries().size(), 3u);
  EXPECT_EQ(reader.entries()[0].name, "z");
  EXPECT_EQ(reader.entries()[1].name, "a");
  EXPECT_EQ(reader.entries()[2].name, "m");
  EXPECT_EQ(reader.entries()[2].data_begin, 11u);
  EXPECT_EQ(reader.find("absent"), nullptr);
  EXPECT_EQ(reader.path(), dir.file("order.safetensors"));
  expect_error([&] { reader.read("absent"); }, {"absent", "order.safetensors"});
}

TEST(SafetensorsRoundTrip, MetadataRoundTrips) {
  ScratchDir dir;
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcödé \"quoted\"\n"}, {"", "empty key"}};
  write_safetensors(dir.file("meta.safetensors"), {{"w", torch::zeros({2})}}, metadata);
  EXPECT_EQ(SafetensorsReader(dir.file("meta.safetensors")).metadata(), metadata);

  write_safetensors(dir.file("plain.safetensors"), {{"w", torch::zeros({2})}});
  EXPECT_TRUE(SafetensorsReader(dir.file("plain.safetensors")).metadata().empty());
  EXPECT_EQ(test::read_raw_file(dir.file("plain.safetensors")).find("__metadata__"), std::string::npos);
}

TEST(SafetensorsRoundTrip, NoTensorsAtAll) {
  ScratchDir dir;
  write_safetensors(dir.file("none.safetensors"), {});
  SafetensorsReader reader(dir.file("none.safetensors"));
  EXPECT_TRUE(reader.entries().empty());
  EXPECT_EQ(test::read_raw_file(dir.file("none.safetensors")), test::u64_le(8) + "{}      ");
}

TEST(SafetensorsRoundTrip, UnicodeTensorNames) {
  ScratchDir dir;
  write_safetensors(dir.file("names.safetensors"), {{"层.权重", torch::ones({1})}, {"with \"quote\"", torch::ones({1})}});
  SafetensorsReader reader(dir.file("names.safetensors"));
  EXPECT_NE(reader.find("层.权重"), nullptr);
  EXPECT_NE(reader.find("with \"quote\""), nullptr);
}

TEST(SafetensorsRoundTrip, OverwriteReplacesFileAndOpenReaderKeepsOldFile) {
  ScratchDir dir;
  const std::string path = dir.file("w.safetensors");
  write_safetensors(path, {{"w", torch::full({4}, 1.0f)}});
  SafetensorsReader old_reader(path);
  write_safetensors(path, {{"w", torch::full({8}, 2.0f)}, {"extra", torch::ones({1})}});
  // The open reader still reads the file it validated, not the one renamed over its path.
  EXPECT_TRUE(torch::equal(old_reader.read("w"), torch::full({4}, 1.0f)));
  SafetensorsReader new_reader(path);
  EXPECT_TRUE(torch::equal(new_reader.read("w"), torch::full({8}, 2.0f)));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()), 1)
      << "no temporary files may remain";
}

TEST(SafetensorsWrite, RejectsTensorsItCannotWriteAndLeavesNoFile) {
  ScratchDir dir;
  const std::string path = dir.file("bad.safetensors");
  const torch::Tensor ok = torch::ones({2});
  expect_error([&] { write_safetensors(path, {{"a", ok}, {"a", ok}}); }, {"bad.safetensors", "'a'", "twice"});
  expect_error([&] { write_safetensors(path, {{"__metadata__", ok}}); }, {"__metadata__", "reserved"});
  expect_error([&] { write_safetensors(path, {{"u", torch::Tensor()}}); }, {"'u'", "undefined"});
  expect_error([&] { write_safetensors(path, {{"c", torch::ones({2}, torch::kComplexDouble)}}); },
               {"'c'", "ComplexDouble"});
  expect_error([&] { write_safetensors(path, {{"s", torch::eye(3).to_sparse()}}); }, {"'s'", "dense"});
  expect_error([&] { write_safetensors(path, {{std::string("bad\xff"), ok}}); }, {"UTF-8"});
  expect_error([&] { write_safetensors(path, {{"a", ok}}, {{"k", std::string("\xc3")}}); }, {"metadata", "UTF-8"});
  expect_error([&] { write_safetensors(dir.file("missing_dir/x.safetensors"), {{"a", ok}}); }, {"missing_dir"});
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace nextn::io

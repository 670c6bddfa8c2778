// Every malformed file is a nextn::Error naming the file and the problem; none crashes or reads
// out of bounds (run these under ASan/UBSan too).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "io_test_util.h"
#include "nextn/io/safetensors.h"

namespace nextn::io {
namespace {

using test::expect_error;
using test::safetensors_bytes;
using test::ScratchDir;
using test::u64_le;

// A header with one F32 tensor "w" of shape [2] and the given JSON for its entry.
std::string one_entry(const std::string& entry_json) { return cat(R"({"w":)", entry_json, "}"); }

const std::string kGoodEntry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
const std::string kEightBytes(8, '\x01');

class SafetensorsValidation : public ::testing::Test {
 protected:
  // Writes the raw bytes and expects opening them to fail with all the fragments (and the path).
  void expect_rejected(const std::string& bytes, std::initializer_list<std::string> fragments) {
    const std::string path = dir_.file("bad.safetensors");
    test::write_raw_file(path, bytes);
    expect_error([&] { SafetensorsReader reader(path); }, fragments);
    expect_error([&] { SafetensorsReader reader(path); }, {"bad.safetensors"});
  }
  void expect_header_rejected(const std::string& header, const std::string& data,
                              std::initializer_list<std::string> fragments) {
    expect_rejected(safetensors_bytes(header, data), fragments);
  }

  ScratchDir dir_;
};

TEST_F(SafetensorsValidation, TheBaselineFileIsValid) {
  const std::string path = dir_.file("good.safetensors");
  test::write_raw_file(path, safetensors_bytes(one_entry(kGoodEntry), kEightBytes));
  EXPECT_EQ(SafetensorsReader(path).read("w").numel(), 2);
}

TEST_F(SafetensorsValidation, FileShorterThanTheLengthPrefix) {
  for (size_t size = 0; size < 8; ++size) expect_rejected(std::string(size, '\0'), {"shorter than the 8-byte"});
}

TEST_F(SafetensorsValidation, HeaderLengthPastTheEndOfTheFile) {
  expect_rejected(u64_le(1000) + "{}", {"header length 1000", "runs past the end"});
  expect_rejected(u64_le(3) + "{}", {"header length 3", "runs past the end"});
}

TEST_F(SafetensorsValidation, AbsurdHeaderLength) {
  expect_rejected(u64_le(100'000'001) + "{}", {"header length 100000001", "exceeds the limit"});
  expect_rejected(u64_le(~0ull) + "{}", {"exceeds the limit"});
  expect_rejected(u64_le(1ull << 63) + "{}", {"exceeds the limit"});
}

TEST_F(SafetensorsValidation, HeaderIsNotAJsonObject) {
  expect_header_rejected("", "", {"starting with '{'"});
  expect_header_rejected("[1, 2]", "", {"starting with '{'"});
  expect_header_rejected(" {}", "", {"starting with '{'"});
  expect_header_rejected("\xef\xbb\xbf{}", "", {"starting with '{'"});  // a UTF-8 byte order mark
  expect_header_rejected("{", "", {"not valid JSON"});
  expect_header_rejected("{\"a\" 1}", "", {"not valid JSON"});
  expect_header_rejected("{} {}", "", {"not valid JSON"});
  // nlohmann alone would stop at the NUL and accept these, hiding bytes in the header.
  expect_header_rejected(std::string("{}\0\0\0", 5), "", {"not valid JSON", "NUL byte at offset 2"});
  expect_header_rejected(std::string("{}\0{\"hidden\":1}", 15), "", {"NUL byte at offset 2"});
  expect_header_rejected(std::string("{\"w\x00\":1}", 8), "", {"not valid JSON"});
  expect_header_rejected("{\"\xff\":{}}", "", {"not valid JSON"});  // not UTF-8
  expect_header_rejected("{/*c*/}", "", {"not valid JSON"});
}

TEST_F(SafetensorsValidation, EntryIsNotAnObject) {
  expect_header_rejected(one_entry("5"), kEightBytes, {"tensor 'w'", "must be an object"});
  expect_header_rejected(one_entry("[\"F32\", [2], [0, 8]]"), kEightBytes, {"tensor 'w'", "must be an object"});
  expect_header_rejected(one_entry("null"), kEightBytes, {"tensor 'w'", "must be an object"});
}

TEST_F(SafetensorsValidation, MissingFields) {
  expect_header_rejected(one_entry(R"({"shape":[2],"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "missing field 'dtype'"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "missing field 'shape'"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2]})"), kEightBytes,
                         {"tensor 'w'", "missing field 'data_offsets'"});
}

TEST_F(SafetensorsValidation, ExtraField) {
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "unexpected field 'offsets'"});
}

TEST_F(SafetensorsValidation, MistypedFields) {
  expect_header_rejected(one_entry(R"({"dtype":32,"shape":[2],"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "dtype must be a string"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "shape must be an array"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":"0-8"})"), kEightBytes,
                         {"tensor 'w'", "data_offsets must be an array of two"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[8]})"), kEightBytes,
                         {"tensor 'w'", "data_offsets must be an array of two"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4,8]})"), kEightBytes,
                         {"tensor 'w'", "data_offsets must be an array of two"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":["0","8"]})"), kEightBytes,
                         {"tensor 'w'", "data_offsets begin must be a non-negative integer"});
}

TEST_F(SafetensorsValidation, UnknownDtype) {
  expect_header_rejected(one_entry(R"({"dtype":"F128","shape":[2],"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "unknown dtype 'F128'"});
  expect_header_rejected(one_entry(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), kEightBytes,
                         {"unknown dtype 'f32'"});
}

TEST_F(SafetensorsValidation, BadShapeEntries) {
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "shape entry must not be negative", "-2"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "shape entry must be a non-negative integer"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,8]})"), kEightBytes,
                         {"shape entry must be a non-negative integer"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[true],"data_offsets":[0,8]})"), kEightBytes,
                         {"shape entry must be a non-negative integer"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]})"),
                         kEightBytes, {"shape entry must be a non-negative integer"});
}

TEST_F(SafetensorsValidation, ElementCountOverflow) {
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
                         kEightBytes, {"tensor 'w'", "overflows"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]})"),
                         kEightBytes, {"tensor 'w'", "overflows"});
  // Zero elements, but libtorch's strides would still overflow.
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]})"), "",
                         {"tensor 'w'", "overflows"});
  // The element count fits, the byte count does not.
  expect_header_rejected(one_entry(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})"),
                         kEightBytes, {"tensor 'w'", "overflows"});
}

TEST_F(SafetensorsValidation, BadDataOffsets) {
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), kEightBytes,
                         {"tensor 'w'", "data_offsets begin must not be negative"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.5]})"), kEightBytes,
                         {"tensor 'w'", "data_offsets end must be a non-negative integer"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), kEightBytes,
                         {"tensor 'w'", "begin > end"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), "1234",
                         {"tensor 'w'", "reach past the end of the 4-byte data buffer"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]})"),
                         kEightBytes, {"tensor 'w'", "reach past the end"});
}

TEST_F(SafetensorsValidation, ByteSizeMustMatchShapeAndDtype) {
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), "1234",
                         {"tensor 'w'", "span 4 bytes", "needs 8"});
  expect_header_rejected(one_entry(R"({"dtype":"F16","shape":[2],"data_offsets":[0,8]})"), kEightBytes,
                         {"tensor 'w'", "span 8 bytes", "needs 4"});
  expect_header_rejected(one_entry(R"({"dtype":"F4","shape":[3],"data_offsets":[0,2]})"), "12",
                         {"tensor 'w'", "do not fill whole bytes"});
}

TEST_F(SafetensorsValidation, OverlappingTensors) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_header_rejected(header, "123456789012", {"'a' [0, 8)", "'b' [4, 12)", "overlap"});
  const std::string same =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  expect_header_rejected(same, kEightBytes, {"'a'", "'b'", "overlap"});
  // An empty tensor placed inside another one's bytes is an overlap too (as in the reference).
  const std::string inside =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})";
  expect_header_rejected(inside, kEightBytes, {"'a'", "'e'", "overlap"});
}

TEST_F(SafetensorsValidation, HolesInTheDataBuffer) {
  const std::string gap =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_header_rejected(gap, "123456789012", {"bytes [4, 8)", "belong to no tensor"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), kEightBytes,
                         {"bytes [0, 4)", "belong to no tensor"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), kEightBytes,
                         {"bytes [4, 8) at the end", "belong to no tensor"});
  expect_header_rejected("{}", "x", {"bytes [0, 1) at the end"});
}

TEST_F(SafetensorsValidation, DuplicateNames) {
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_header_rejected(header, kEightBytes, {"repeats the key 'w'"});
  expect_header_rejected(one_entry(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), kEightBytes,
                         {"repeats the key 'w' > 'dtype'"});
  expect_header_rejected(R"({"__metadata__":{"k":"1","k":"2"}})", "", {"repeats the key '__metadata__' > 'k'"});
}

TEST_F(SafetensorsValidation, MetadataMustMapStringsToStrings) {
  expect_header_rejected(R"({"__metadata__":{"epoch":3}})", "", {"__metadata__", "'epoch'", "must be a string"});
  expect_header_rejected(R"({"__metadata__":{"nested":{"a":"b"}}})", "", {"__metadata__", "must be a string"});
  expect_header_rejected(R"({"__metadata__":["a"]})", "", {"__metadata__", "must be an object"});
  expect_header_rejected(R"({"__metadata__":"a"})", "", {"__metadata__", "must be an object"});
}

TEST_F(SafetensorsValidation, BoolBytesOtherThanZeroOrOneAreRejectedOnRead) {
  const std::string path = dir_.file("bool.safetensors");
  test::write_raw_file(path, safetensors_bytes(one_entry(R"({"dtype":"BOOL","shape":[3],"data_offsets":[0,3]})"),
                                               std::string("\x01\x00\x02", 3)));
  SafetensorsReader reader(path);
  expect_error([&] { reader.read("w"); }, {"tensor 'w'", "BOOL element 2 is byte 2"});
}

TEST_F(SafetensorsValidation, FilesThatCannotBeOpened) {
  expect_error([&] { SafetensorsReader reader(dir_.file("absent.safetensors")); }, {"cannot open", "absent.safetensors"});
  expect_error([&] { SafetensorsReader reader(dir_.path()); }, {"not a regular file"});
}

// A valid file with several dtypes and metadata, for the sweeps below.
std::string sweep_file_bytes(const ScratchDir& dir) {
  const std::string path = dir.file("sweep_source.safetensors");
  write_safetensors(path,
                    {{"f", torch::arange(3, torch::kFloat32)},
                     {"b", torch::tensor({true, false})},
                     {"e", torch::empty({0, 2}, torch::kInt64)},
                     {"s", torch::tensor(5, torch::kInt16)},
                     {"h", torch::ones({2, 2}, torch::kBFloat16)}},
                    {{"format", "pt"}});
  return test::read_raw_file(path);
}

// Opens `path` and reads every tensor. Returns false when a nextn::Error was thrown; anything else
// thrown (or a crash) fails the test.
bool open_and_read_all(const std::string& path) {
  try {
    SafetensorsReader reader(path);
    for (const SafetensorsEntry& entry : reader.entries()) {
      torch::Tensor t = reader.read(entry.name);
      EXPECT_EQ(static_cast<uint64_t>(t.numel() * t.element_size()), entry.byte_size());
    }
    return true;
  } catch (const Error&) {
    return false;
  }
}

TEST_F(SafetensorsValidation, TruncationAtEveryLengthIsAnErrorUntilTheFullFile) {
  const std::string bytes = sweep_file_bytes(dir_);
  const std::string path = dir_.file("truncated.safetensors");
  test::write_raw_file(path, bytes);
  // Shrinking one file step by step with truncate() is far cheaper than writing each prefix.
  for (size_t length = bytes.size(); length-- > 0;) {
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(length)), 0);
    EXPECT_FALSE(open_and_read_all(path)) << "a file truncated to " << length << " of " << bytes.size()
                                          << " bytes was accepted";
  }
  test::write_raw_file(path, bytes);
  ASSERT_TRUE(open_and_read_all(path));
  SafetensorsReader reader(path);
  EXPECT_TRUE(torch::equal(reader.read("f"), torch::arange(3, torch::kFloat32)));
  EXPECT_TRUE(torch::equal(reader.read("h"), torch::ones({2, 2}, torch::kBFloat16)));
}

TEST_F(SafetensorsValidation, CorruptingAnyHeaderByteNeverCrashes) {
  const std::string bytes = sweep_file_bytes(dir_);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(bytes[i]);
  const std::string path = dir_.file("corrupt.safetensors");
  test::write_raw_file(path, bytes);
  // Each mutation is written in place with pwrite and undone afterwards: far cheaper than
  // rewriting the file thousands of times.
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  auto put_byte = [&](size_t position, unsigned char value) {
    ASSERT_EQ(::pwrite(fd, &value, 1, static_cast<off_t>(position)), 1);
  };
  // Bit flips, plus replacements that keep the JSON plausible: digits, structure, quotes.
  const std::vector<std::pair<bool, unsigned char>> mutations = {
      {true, 0x01}, {true, 0x02}, {true, 0x80}, {true, 0xff}, {false, '0'}, {false, '9'},
      {false, '-'}, {false, ']'}, {false, '"'}, {false, ' '}, {false, 'e'}};
  int accepted = 0, rejected = 0;
  for (size_t position = 0; position < 8 + header_length; ++position) {
    const auto original = static_cast<unsigned char>(bytes[position]);
    for (const auto& [is_xor, byte] : mutations) {
      const unsigned char mutated = is_xor ? (original ^ byte) : byte;
      if (mutated == original) continue;
      put_byte(position, mutated);
      (open_and_read_all(path) ? accepted : rejected)++;
    }
    put_byte(position, original);
  }
  ::close(fd);
  ASSERT_EQ(test::read_raw_file(path), bytes);
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // e.g. a changed name or padding byte still makes a valid file
}

}  // namespace
}  // namespace nextn::io

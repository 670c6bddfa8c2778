#include <gtest/gtest.h>

#include "data/data_fixtures.h"
#include "nextn/data/corpus_reader.h"
#include "nextn/util/error.h"

namespace nextn::data {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;
using testing::expect_error;
using testing::write_text;

std::vector<Document> read_all(CorpusReader& reader) {
  std::vector<Document> documents;
  Document document;
  while (reader.next(document)) documents.push_back(document);
  return documents;
}

std::vector<std::string> texts(const std::vector<Document>& documents) {
  std::vector<std::string> out;
  for (const Document& d : documents) out.push_back(d.text);
  return out;
}

void write_mixed_corpus(const TempDir& dir) {
  write_text(dir / "b.py", "print(2)\n");
  write_text(dir / "a.txt", "alpha\n");
  write_text(dir / "sub/c.py", "c = 3\n");
  write_text(dir / "docs.jsonl",
             "{\"text\": \"first\"}\n\n{\"text\": 5}\nnot json\n{\"body\": \"x\"}\n{\"text\": \"second\"}\n");
  write_text(dir / "bin.dat", std::string("ab\0cd", 5));
  write_text(dir / "latin1.txt", "caf\xE9\n");
  write_text(dir / "empty.txt", "");
}

TEST(CorpusReader, ReadsDirectoriesInSortedOrderAndCountsWhatItSkips) {
  TempDir dir;
  write_mixed_corpus(dir);
  CorpusOptions options;
  options.inputs = {dir.path()};
  CorpusReader reader(options);
  std::vector<Document> documents = read_all(reader);
  EXPECT_EQ(texts(documents), (std::vector<std::string>{"alpha\n", "print(2)\n", "first", "second", "c = 3\n"}));
  EXPECT_EQ(documents[2].source, dir / "docs.jsonl:1");
  EXPECT_EQ(documents[3].source, dir / "docs.jsonl:6");
  const CorpusStats& stats = reader.stats();
  EXPECT_EQ(stats.files, 7);
  EXPECT_EQ(stats.documents, 5);
  EXPECT_EQ(stats.bytes, 6 + 9 + 5 + 6 + 6);
  EXPECT_EQ(stats.skipped_binary, 1);
  EXPECT_EQ(stats.skipped_not_utf8, 1);
  EXPECT_EQ(stats.skipped_empty, 1);
  EXPECT_EQ(stats.skipped_records, 3);  // a number, not JSON, no text field; the blank line is no record
}

TEST(CorpusReader, IncludeAndExcludeGlobs) {
  TempDir dir;
  write_mixed_corpus(dir);
  CorpusOptions options;
  options.inputs = {dir.path()};
  options.include = {"*.py"};
  CorpusReader python(options);
  EXPECT_EQ(python.files(), (std::vector<std::string>{dir / "b.py", dir / "sub/c.py"}));
  options.exclude = {"sub"};
  EXPECT_EQ(CorpusReader(options).files(), (std::vector<std::string>{dir / "b.py"}));
  options.include = {"sub/*.py"};  // with a '/': matched against the relative path
  options.exclude = {};
  EXPECT_EQ(CorpusReader(options).files(), (std::vector<std::string>{dir / "sub/c.py"}));
  // A file named explicitly is read whatever the globs say.
  options.inputs = {dir / "a.txt"};
  EXPECT_EQ(CorpusReader(options).files(), (std::vector<std::string>{dir / "a.txt"}));
}

TEST(CorpusReader, TextFieldAndSizeLimit) {
  TempDir dir;
  write_text(dir / "x.jsonl", "{\"content\": \"one\"}\n{\"text\": \"two\"}\n");
  write_text(dir / "big.txt", "0123456789");
  CorpusOptions options;
  options.inputs = {dir.path()};
  options.text_field = "content";
  options.max_document_bytes = 5;
  CorpusReader reader(options);
  EXPECT_EQ(texts(read_all(reader)), (std::vector<std::string>{"one"}));
  EXPECT_EQ(reader.stats().skipped_too_large, 1);
  EXPECT_EQ(reader.stats().skipped_records, 1);
}

TEST(CorpusReader, BadInputsAreClearErrors) {
  TempDir dir;
  CorpusOptions options;
  options.inputs = {dir / "missing"};
  expect_error([&] { CorpusReader reader(options); }, "does not exist");
  options.inputs = {dir.path()};
  expect_error([&] { CorpusReader reader(options); }, "has no files");
  write_text(dir / "a.txt", "x");
  options.include = {"*.py"};
  expect_error([&] { CorpusReader reader(options); }, "matching the include globs");
  options.inputs = {};
  expect_error([&] { CorpusReader reader(options); }, "no input");
}

TEST(CorpusReader, GlobsMatchNamesOrRelativePaths) {
  EXPECT_TRUE(glob_matches("*.py", "a/b/c.py"));
  EXPECT_FALSE(glob_matches("*.py", "a/b/c.pyc"));
  EXPECT_TRUE(glob_matches("test_*", "lib/test_x.py"));
  EXPECT_TRUE(glob_matches("lib/*.py", "lib/x.py"));
  EXPECT_TRUE(glob_matches("lib/*", "lib/sub/x.py"));  // '*' crosses '/'
  EXPECT_FALSE(glob_matches("lib/*.py", "other/x.py"));
}

TEST(CorpusReader, FindsThePythonStandardLibrary) {
  CorpusOptions options;
  try {
    options = python_stdlib_corpus();
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  ASSERT_EQ(options.inputs.size(), 1u);
  EXPECT_EQ(options.inputs[0].rfind("/usr/lib/python3.", 0), 0u) << options.inputs[0];
  EXPECT_TRUE(fs::exists(fs::path(options.inputs[0]) / "os.py"));
  EXPECT_EQ(options.include, (std::vector<std::string>{"*.py"}));
}

}  // namespace
}  // namespace nextn::data

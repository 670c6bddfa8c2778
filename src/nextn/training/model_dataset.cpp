#include "nextn/training/model_dataset.h"

#include <filesystem>

#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/util/error.h"

namespace nextn {

data::TokenDataset open_dataset_for_model(const std::string& data_dir, const std::string& model_dir,
                                          int64_t model_vocab_size) {
  data::TokenDataset dataset = data::TokenDataset::open(data_dir);
  const std::string tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
  if (io::file_exists(tokenizer_path)) {
    const std::string model_hash = tokenizer::Tokenizer::load(tokenizer_path).hash();
    NEXTN_CHECK(model_hash == dataset.manifest().tokenizer_hash, "dataset '", data_dir,
                "' was made with another tokenizer than model '", model_dir, "': the dataset's is ",
                dataset.manifest().tokenizer_hash, ", the model's tokenizer.json is ", model_hash,
                "; prepare the data with the model's tokenizer (nextn data prepare --tokenizer ", tokenizer_path, ")");
  }
  NEXTN_CHECK(dataset.vocab_size() <= model_vocab_size, "dataset '", data_dir, "' has token ids up to ",
              dataset.vocab_size() - 1, ", past the vocabulary of model '", model_dir, "' (vocab_size ",
              model_vocab_size, "): it was made with another tokenizer");
  return dataset;
}

}  // namespace nextn

// A model paired with a dataset (eval, train --resume, draft-vocab): the dataset's ids must be the
// model's tokens. Ids of another tokenizer are other words to the model, and the losses computed
// on them would be numbers without meaning.
#pragma once

#include <cstdint>
#include <string>

#include "nextn/data/token_dataset.h"

namespace nextn {

// Opens the dataset for the model in model_dir: refused, naming both, when the model directory's
// tokenizer.json (if it has one) did not make the dataset, or when the dataset's vocabulary is
// larger than the model's (its ids would index past the embedding).
data::TokenDataset open_dataset_for_model(const std::string& data_dir, const std::string& model_dir,
                                          int64_t model_vocab_size);

}  // namespace nextn

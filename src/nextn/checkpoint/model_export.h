// `nextn export`: a model directory written anew (another dtype or shard size, or without the MTP
// modules) together with the files that travel with the weights (tokenizer.json and
// tokenizer_config.json, and draft_vocab.json unless the drafters are dropped).
//
// All or nothing: the export is written into a temporary directory beside --out and then put in
// its place in one step (io/directory_replace.h), so that --out holds the complete earlier export
// or the complete new one at every instant, whatever fails or is killed. The new export replaces
// the old one completely: files the new one does not have (shards of an earlier sharding, a
// draft_vocab.json after --drop-mtp) are gone with it. Since the whole directory is replaced, an
// existing --out may only hold the files of an export; a directory with anything else in it is
// refused, naming what it holds, rather than deleted.
#pragma once

#include <string>

#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/config/model_config.h"

namespace nextn {

struct ExportResult {
  bool has_tokenizer = false;  // the source directory had a tokenizer.json, and the export has it
};

// Whether `name` is a file an export may consist of: config.json, model.safetensors, the index and
// shard files, tokenizer.json, tokenizer_config.json, draft_vocab.json, and the temporary files of an earlier nextn
// killed while writing one of those in place ("<name>.tmp.<pid>").
bool is_export_file_name(const std::string& name);

// nextn::Error unless `out_dir` is absent, an empty directory or one that holds only files of an
// export (is_export_file_name): what export_model may replace without losing anything else.
void check_export_target(const std::string& out_dir);

// Writes the export into the existing, empty directory `dir`: the model (save_model with `options`)
// and the companion files copied from `source_dir`.
ExportResult write_export_files(DeepSeekV3Impl& model, const std::string& source_dir, const std::string& dir,
                                const SaveModelOptions& options);

// check_export_target, then write_export_files into a temporary directory that replaces `out_dir`.
ExportResult export_model(DeepSeekV3Impl& model, const std::string& source_dir, const std::string& out_dir,
                          const SaveModelOptions& options);

// `nextn model init`: a model directory of freshly initialized weights, the ones a training run
// with the same --seed starts from (torch::manual_seed, then the model's own initialization), and
// `tokenizer_path`'s file as its tokenizer.json unless that is empty (with the tokenizer_config.json
// beside it, if any). It measures what a model's size costs (serving, decoding) without training it
// first, as vLLM's dummy weights do. The tokenizer is loaded first and refused when it has more ids
// than the model's vocabulary; --out follows export_model's rules (written whole or not at all).
ExportResult init_model_directory(const ModelConfig& config, uint64_t seed, const std::string& tokenizer_path,
                                  const std::string& out_dir, const SaveModelOptions& options);

}  // namespace nextn

// `nextn draft-vocab`: rank a model's tokens by their frequency in a prepared dataset and write
// the ranking beside the model (draft_vocab.json), where `nextn generate --draft-vocab K` finds it.
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "command_registry.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/config/model_config.h"
#include "nextn/data/token_counts.h"
#include "nextn/data/token_dataset.h"
#include "nextn/inference/token_ranking.h"
#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/model_dataset.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

struct DraftVocabFlags {
  std::string model_dir, data_dir, split = "train", out;
  int64_t max_tokens = 0;
};

void run_draft_vocab(const DraftVocabFlags& f) {
  const std::string dir = resolve_model_dir(f.model_dir);
  const ModelConfig config = load_model_config((fs::path(dir) / "config.json").string());
  // The dataset must have been made by the model's tokenizer: its ids are the model's tokens.
  const std::string tokenizer_path = (fs::path(dir) / "tokenizer.json").string();
  NEXTN_CHECK(io::file_exists(tokenizer_path), "draft-vocab: no tokenizer.json in '", dir,
              "' to check the dataset's tokens against");
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  const data::TokenDataset dataset = open_dataset_for_model(f.data_dir, dir, config.vocab_size);
  const data::Split split = data::split_from_string(f.split);
  // No tokens would rank every id equal, i.e. in id order, under the name of a frequency ranking.
  NEXTN_CHECK(dataset.num_tokens(split) > 0, "draft-vocab: the ", data::to_string(split), " split of '", f.data_dir,
              "' has no tokens to count");
  const auto counts = data::count_tokens(dataset, split, config.vocab_size, f.max_tokens);
  const bool part = f.max_tokens > 0 && f.max_tokens < dataset.num_tokens(split);
  const auto ranking = inference::rank_tokens(
      counts, cat(f.data_dir, " (", data::to_string(split), part ? cat(", first ", f.max_tokens) : "", ")"), tok.hash());
  const std::string out = f.out.empty() ? (fs::path(dir) / inference::kTokenRankingFile).string() : f.out;
  inference::save_token_ranking(out, ranking);
  int64_t seen = 0;
  for (int64_t c : ranking.counts) seen += c > 0;
  std::cout << "draft-vocab: " << ranking.tokens_counted() << " tokens of " << ranking.source << "; " << seen << " of "
            << ranking.vocab_size() << " token ids occur; wrote " << out << "\n";
  // How much of the text the most frequent K tokens cover: what a draft vocabulary of K keeps.
  int64_t covered = 0;
  int64_t next_report = 256;
  for (int64_t i = 0; i < ranking.vocab_size(); ++i) {
    covered += ranking.counts[i];
    if (i + 1 == next_report || i + 1 == ranking.vocab_size()) {
      const double percent = ranking.tokens_counted() > 0 ? 100.0 * covered / ranking.tokens_counted() : 0.0;
      std::cout << "  the " << i + 1 << " most frequent: " << std::fixed << std::setprecision(1) << percent
                << "% of the tokens\n";
      next_report *= 2;
    }
  }
}

void setup_draft_vocab(CLI::App& app) {
  auto f = std::make_shared<DraftVocabFlags>();
  auto* cmd = app.add_subcommand("draft-vocab", "Rank a model's tokens by frequency in a dataset, for drafting from the "
                                                "most frequent (generate --draft-vocab K)");
  cmd->add_option("--model", f->model_dir, "model directory, or a run directory (its newest checkpoint)")->required();
  cmd->add_option("--data", f->data_dir, "prepared dataset (nextn data prepare) made with the model's tokenizer")
      ->required();
  cmd->add_option("--split", f->split, "train or validation")->capture_default_str();
  cmd->add_option("--max-tokens", f->max_tokens, "count the split's first N tokens only (0: all)");
  cmd->add_option("--out", f->out, "output file (default: draft_vocab.json in the model directory)");
  cmd->callback([f] { run_draft_vocab(*f); });
}

NEXTN_REGISTER_COMMAND(62, setup_draft_vocab);

}  // namespace
}  // namespace nextn::cli

// Post-processors of a tokenizer.json: what encoding with special tokens adds around the ids of
// one sequence (BOS/EOS, [CLS]/[SEP]). Supported: TemplateProcessing, ByteLevel (changes offsets
// only), BertProcessing, RobertaProcessing and a Sequence of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nextn::tokenizer {

// One item of a TemplateProcessing template: the sequence ("A" or "B") or a special token.
struct TemplateItem {
  bool is_special = false;
  std::string id;  // "A" / "B", or the special token's name in special_tokens
  uint32_t type_id = 0;
  bool operator==(const TemplateItem& o) const { return is_special == o.is_special && id == o.id && type_id == o.type_id; }
};

struct TemplateSpecialToken {
  std::string id;
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
  bool operator==(const TemplateSpecialToken& o) const { return id == o.id && ids == o.ids && tokens == o.tokens; }
};

struct PostProcessorStep {
  enum class Kind { kByteLevel, kTemplate, kBert, kRoberta };
  Kind kind = Kind::kByteLevel;
  bool add_prefix_space = true;  // ByteLevel, Roberta (offsets only)
  bool trim_offsets = true;
  bool use_regex = true;         // ByteLevel
  std::vector<TemplateItem> single, pair;                // Template
  std::vector<TemplateSpecialToken> special_tokens;      // Template, in the file's order
  std::string cls_token, sep_token;                      // Bert, Roberta
  int32_t cls_id = 0, sep_id = 0;
  bool operator==(const PostProcessorStep& o) const {
    return kind == o.kind && add_prefix_space == o.add_prefix_space && trim_offsets == o.trim_offsets &&
           use_regex == o.use_regex && single == o.single && pair == o.pair && special_tokens == o.special_tokens &&
           cls_token == o.cls_token && sep_token == o.sep_token && cls_id == o.cls_id && sep_id == o.sep_id;
  }
};

struct PostProcessorSpec {
  bool present = false;
  bool as_sequence = false;
  std::vector<PostProcessorStep> steps;
  bool operator==(const PostProcessorSpec& o) const {
    return present == o.present && as_sequence == o.as_sequence && steps == o.steps;
  }
};

// The ids of one sequence with the special tokens the post-processor adds (Hugging Face's
// process with add_special_tokens = true). Unknown template names are an error.
std::vector<int32_t> add_special_tokens(const PostProcessorSpec& spec, std::vector<int32_t> ids);

// Checks the spec (template names defined, A in the single template); errors name the field.
void validate_post_processor(const PostProcessorSpec& spec);

}  // namespace nextn::tokenizer

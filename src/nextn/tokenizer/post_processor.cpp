#include "nextn/tokenizer/post_processor.h"

#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

const TemplateSpecialToken* find_special(const PostProcessorStep& step, const std::string& name) {
  for (const TemplateSpecialToken& token : step.special_tokens) {
    if (token.id == name) return &token;
  }
  return nullptr;
}

std::vector<int32_t> apply_template(const PostProcessorStep& step, const std::vector<int32_t>& ids) {
  std::vector<int32_t> out;
  for (const TemplateItem& item : step.single) {
    if (!item.is_special) {
      // "B" has no sequence in a single encoding: it contributes nothing.
      if (item.id == "A") out.insert(out.end(), ids.begin(), ids.end());
      continue;
    }
    const TemplateSpecialToken* special = find_special(step, item.id);
    NEXTN_CHECK(special, "post_processor: template token '", item.id, "' is not in special_tokens");
    out.insert(out.end(), special->ids.begin(), special->ids.end());
  }
  return out;
}

}  // namespace

std::vector<int32_t> add_special_tokens(const PostProcessorSpec& spec, std::vector<int32_t> ids) {
  if (!spec.present) return ids;
  for (const PostProcessorStep& step : spec.steps) {
    switch (step.kind) {
      case PostProcessorStep::Kind::kByteLevel:
        break;
      case PostProcessorStep::Kind::kTemplate:
        ids = apply_template(step, ids);
        break;
      case PostProcessorStep::Kind::kBert:
      case PostProcessorStep::Kind::kRoberta: {
        std::vector<int32_t> out{step.cls_id};
        out.insert(out.end(), ids.begin(), ids.end());
        out.push_back(step.sep_id);
        ids = std::move(out);
        break;
      }
    }
  }
  return ids;
}

void validate_post_processor(const PostProcessorSpec& spec) {
  for (const PostProcessorStep& step : spec.steps) {
    if (step.kind != PostProcessorStep::Kind::kTemplate) continue;
    for (const auto* items : {&step.single, &step.pair}) {
      for (const TemplateItem& item : *items) {
        if (item.is_special) {
          NEXTN_CHECK(find_special(step, item.id), "post_processor: template token '", item.id,
                      "' is not in special_tokens");
        } else {
          NEXTN_CHECK(item.id == "A" || item.id == "B", "post_processor: sequence id '", item.id, "' is not A or B");
        }
      }
    }
    for (const TemplateSpecialToken& token : step.special_tokens) {
      NEXTN_CHECK(token.ids.size() == token.tokens.size(), "post_processor.special_tokens['", token.id,
                  "']: ", token.ids.size(), " ids but ", token.tokens.size(), " tokens");
    }
  }
}

}  // namespace nextn::tokenizer

// The built-in "simple" pre-tokenizer: a hand-written scanner for code-like text that needs no
// regex engine. It classifies bytes as ASCII letters/underscore (and every non-ASCII byte),
// digits, white space and the rest (ASCII punctuation and controls), and splits exactly as
// kSimpleSplitPattern does on valid UTF-8, which is how it is written into tokenizer.json files
// (so Hugging Face tokenizers reproduce it). On invalid UTF-8 the scanner treats stray bytes as
// letters while the regex leaves them in gaps; both keep every byte.
#pragma once

#include <string_view>
#include <vector>

namespace nextn::tokenizer {

// The regex the scanner implements (alternatives in order): an optional space and a run of
// letters; 1-3 digits; an optional space, a run of punctuation and any newlines after it;
// white space up to its last newline; white space not followed by a non-space, minus the last
// character when one follows (so that " word" keeps its space); any other white space.
extern const char* const kSimpleSplitPattern;

// Appends the pieces of `text` (views into it) to `pieces`.
void simple_split(std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace nextn::tokenizer

// The DeepSeek-V3/V4 pre-tokenizer (PROTOCOL.md §1.4): three regex Splits with behaviour
// Isolated, applied in sequence, each re-splitting every piece of the previous one:
//   1. \p{N}{1,3}
//   2. [一-龥぀-ゟ゠-ヿ]+   (U+4E00-9FA5, U+3040-309F, U+30A0-30FF)
//   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
//      | ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// The regexes are hand-compiled into scanners with the exact leftmost-first backtracking
// semantics of Oniguruma (the engine of the reference HF tokenizers): \s is the Unicode
// White_Space property (it includes U+0085 and excludes U+FEFF, unlike JavaScript's \s).
//
// Input is bytes. Valid UTF-8 behaves exactly as the regexes on the decoded text. A byte that
// does not start a well-formed sequence (the reference never sees one: its input is a Unicode
// string) is treated as one character of category Cn, so every input byte lands in exactly one
// piece and encoding stays lossless.
#pragma once

#include <string_view>
#include <vector>

namespace dsv4::tokenizer {

// Appends the pieces of `text`, in order; they concatenate back to `text`.
void pretokenize(std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace dsv4::tokenizer

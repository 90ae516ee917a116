#include "tokenizer/tokenizer.h"

#include <array>
#include <climits>
#include <cstdio>
#include <unordered_map>

#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/special_matcher.h"

namespace dsv4::tokenizer {

struct Tokenizer::Data {
  Vocab vocab;                     // types always filled in
  std::vector<std::string> bytes;  // decoded bytes of each token
  std::vector<uint8_t> added;
  size_t added_count = 0;
  std::unordered_map<std::string_view, int32_t> by_string;  // views into vocab.tokens
  std::unordered_map<std::string_view, int32_t> by_bytes;   // views into bytes
  Bpe bpe;
  SpecialMatcher special;
};

namespace {

bool is_added_type(int32_t type) { return type == kTokenControl || type == kTokenUserDefined; }

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

Result<Tokenizer> Tokenizer::from_vocab(Vocab vocab) {
  auto d = std::make_shared<Data>();
  const size_t n = vocab.tokens.size();
  if (n == 0) return make_error("tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) return make_error("tokenizer: vocabulary too large");
  if (!vocab.types.empty() && vocab.types.size() != n) {
    return make_error("tokenizer: " + std::to_string(vocab.types.size()) + " token types for " +
                      std::to_string(n) + " tokens");
  }
  for (size_t i = 0; i < vocab.types.size(); ++i) {
    if (vocab.types[i] < kTokenNormal || vocab.types[i] > kTokenByte) {
      return make_error("tokenizer: token " + std::to_string(i) + " has type " +
                        std::to_string(vocab.types[i]) + ", expected 1..6");
    }
  }
  d->vocab = std::move(vocab);
  Vocab& v = d->vocab;

  d->by_string.reserve(n);
  for (size_t i = 0; i < n; ++i) d->by_string.emplace(v.tokens[i], static_cast<int32_t>(i));

  // Merges: "left right" with a single ASCII space (alphabet spellings never contain one).
  std::vector<Merge> merges;
  merges.reserve(v.merges.size());
  std::vector<uint8_t> produced(n, 0);
  std::string joined;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const std::string& m = v.merges[r];
    const size_t space = m.find(' ');
    auto fail = [&](const std::string& why) {
      return make_error("tokenizer: merge " + std::to_string(r) + " " + quote(m) + ": " + why);
    };
    if (space == std::string::npos || space == 0 || space + 1 == m.size() ||
        m.find(' ', space + 1) != std::string::npos) {
      return fail("expected \"left right\"");
    }
    const std::string_view left(m.data(), space);
    const std::string_view right(m.data() + space + 1, m.size() - space - 1);
    joined.assign(left).append(right);
    const auto l = d->by_string.find(left);
    const auto r2 = d->by_string.find(right);
    const auto j = d->by_string.find(joined);
    if (l == d->by_string.end()) return fail(quote(left) + " is not in the vocabulary");
    if (r2 == d->by_string.end()) return fail(quote(right) + " is not in the vocabulary");
    if (j == d->by_string.end()) return fail(quote(joined) + " is not in the vocabulary");
    merges.push_back(Merge{l->second, r2->second, j->second});
    produced[j->second] = 1;
  }

  d->bytes.resize(n);
  d->added.assign(n, 0);
  std::vector<uint8_t> in_alphabet(n, 0);
  const bool derive_types = v.types.empty();
  if (derive_types) v.types.assign(n, kTokenNormal);
  for (size_t i = 0; i < n; ++i) {
    auto decoded = byte_level::decode(v.tokens[i]);
    in_alphabet[i] = decoded.has_value();
    bool added;
    if (derive_types) {
      // Without token types: a BPE token is one alphabet character or the product of a merge;
      // anything else can never come out of BPE, so it must be an added token.
      const bool single = decoded && decoded->size() == 1;
      added = !decoded || !(single || produced[i]);
      if (added) v.types[i] = kTokenUserDefined;
    } else {
      added = is_added_type(v.types[i]);
    }
    d->added[i] = added;
    d->added_count += added;
    // A typed-normal token outside the alphabet cannot be produced by BPE; it still decodes
    // to its literal text.
    d->bytes[i] = added || !decoded ? v.tokens[i] : std::move(*decoded);
  }

  std::array<int32_t, 256> byte_tokens{};
  for (int b = 0; b < 256; ++b) {
    const std::string spelling = byte_level::encode(std::string(1, static_cast<char>(b)));
    const auto it = d->by_string.find(spelling);
    if (it == d->by_string.end() || d->added[it->second]) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      return make_error(std::string("tokenizer: the vocabulary has no BPE token for byte ") + hex +
                        " (" + quote(spelling) + ")");
    }
    byte_tokens[b] = it->second;
  }

  std::vector<std::string> bpe_bytes(n);  // candidates for whole-piece shortcuts
  for (size_t i = 0; i < n; ++i) {
    if (!d->added[i] && in_alphabet[i]) bpe_bytes[i] = d->bytes[i];
  }
  d->bpe = Bpe(byte_tokens, merges, bpe_bytes);

  std::vector<std::pair<std::string_view, int32_t>> specials;
  for (size_t i = 0; i < n; ++i) {
    if (d->added[i]) specials.emplace_back(v.tokens[i], static_cast<int32_t>(i));
  }
  d->special = SpecialMatcher(specials);

  d->by_bytes.reserve(n);
  for (size_t i = 0; i < n; ++i) d->by_bytes.emplace(d->bytes[i], static_cast<int32_t>(i));

  return Tokenizer(std::move(d));
}

void Tokenizer::append_text(std::string_view text, std::vector<int32_t>& out) const {
  // Below this size a memo of merged pieces costs more to set up than it saves.
  constexpr size_t kMemoMinBytes = 4096;
  std::vector<std::string_view> pieces;
  pretokenize(text, pieces);
  if (text.size() < kMemoMinBytes) {
    for (std::string_view piece : pieces) d_->bpe.encode(piece, out);
    return;
  }
  bpe_tables::PieceMemo memo;
  for (std::string_view piece : pieces) d_->bpe.encode(piece, out, &memo);
}

std::vector<int32_t> Tokenizer::encode_text(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  append_text(text, out);
  return out;
}

void Tokenizer::append_with_special(std::string_view text, std::vector<int32_t>& out) const {
  size_t pos = 0;
  while (pos < text.size()) {
    const SpecialMatcher::Match m = d_->special.find(text, pos);
    if (m.length == 0) break;
    append_text(text.substr(pos, m.begin - pos), out);
    out.push_back(m.id);
    pos = m.begin + m.length;
  }
  append_text(text.substr(pos), out);
}

std::vector<int32_t> Tokenizer::encode_with_special(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  append_with_special(text, out);
  return out;
}

std::vector<Tokenizer::Segment> Tokenizer::split_special(std::string_view text) const {
  std::vector<Segment> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const SpecialMatcher::Match m = d_->special.find(text, pos);
    if (m.length == 0) break;
    if (m.begin > pos) out.push_back(Segment{text.substr(pos, m.begin - pos), -1});
    out.push_back(Segment{text.substr(m.begin, m.length), m.id});
    pos = m.begin + m.length;
  }
  if (pos < text.size()) out.push_back(Segment{text.substr(pos), -1});
  return out;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  const auto it = d_->by_string.find(token);
  if (it == d_->by_string.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> Tokenizer::token_id_for_text(std::string_view text) const {
  const auto it = d_->by_bytes.find(text);
  if (it == d_->by_bytes.end()) return std::nullopt;
  return it->second;
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (!valid_id(id)) {
      return make_error("tokenizer: token id " + std::to_string(id) + " outside the vocabulary (" +
                        std::to_string(vocab_size()) + " tokens)");
    }
    out += d_->bytes[id];
  }
  return out;
}

const std::string& Tokenizer::piece(int32_t id) const {
  static const std::string empty;
  return valid_id(id) ? d_->bytes[id] : empty;
}

const std::string& Tokenizer::token(int32_t id) const {
  static const std::string empty;
  return valid_id(id) ? d_->vocab.tokens[id] : empty;
}

bool Tokenizer::is_added(int32_t id) const { return valid_id(id) && d_->added[id]; }
int32_t Tokenizer::type(int32_t id) const { return valid_id(id) ? d_->vocab.types[id] : 0; }
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(d_->vocab.tokens.size()); }
size_t Tokenizer::merge_count() const { return d_->bpe.merge_count(); }
size_t Tokenizer::added_count() const { return d_->added_count; }
const Vocab& Tokenizer::vocab() const { return d_->vocab; }

}  // namespace dsv4::tokenizer

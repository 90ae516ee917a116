#include "model/synthetic_vocab.h"

#include <map>
#include <set>
#include <utility>

namespace dsv4::model {
namespace {

// The added tokens of the V4 vocabulary that prompts and tool calls use (PROTOCOL.md §1.3,
// ids 128800..128846 there). Strings are literal UTF-8 (U+FF5C, U+2581).
const char* const kNamedTokens[] = {
    "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜User｜>", "<｜Assistant｜>", "<|EOT|>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>", "<｜tool▁sep｜>", "<｜begin▁of▁repo▁name｜>", "<｜end▁of▁repo▁name｜>",
    "<｜begin▁of▁file▁name｜>", "<｜end▁of▁file▁name｜>", "<｜begin▁of▁file｜>", "<｜end▁of▁file｜>",
    "<think>", "</think>", "<｜place▁holder▁for▁copy｜>", "<｜place▁holder▁for▁pointer▁replace｜>",
    "｜DSML｜", "<｜begin▁sys｜>", "<｜end▁sys｜>", "<｜latest_reminder｜>", "<｜action｜>",
    "<｜query｜>", "<｜authority｜>", "<｜domain｜>", "<｜task｜>", "<｜political｜>", "<｜entity｜>",
    "<｜title｜>", "<｜safety｜>", "<｜answer｜>", "<｜search｜>", "<dsml:", "</dsml:",
    "<｜search▁begin｜>", "<｜search▁end｜>", "<｜extracted_url｜>", "<｜read_url｜>",
    "<｜end_of_query｜>",
};
constexpr int64_t kNamedCount = sizeof(kNamedTokens) / sizeof(kNamedTokens[0]);

// Merges are learned from this text so that common English and code fragments get short
// encodings in test models; any text still encodes through the byte symbols.
const char kCorpus[] =
    "The quick brown fox jumps over the lazy dog. The model reads the whole prompt and then "
    "writes the answer one token at a time. A token is a piece of text: a word, part of a word, "
    "a number or a symbol. Hello, world! How are you today? I am fine, thank you. "
    "def main():\n    print(\"hello world\")\n    return 0\n\n"
    "int main(int argc, char** argv) {\n  for (int i = 0; i < argc; ++i) {\n    return i;\n  }\n}\n"
    "function add(a, b) { return a + b; }\nconst value = await fetch(url);\n"
    "The tool call returns a result. The user asks a question and the assistant answers it. "
    "In the beginning there was the word, and the word was with the model. This is a test of "
    "the tokenizer and of the engine that runs the model on the GPU and on the CPU. "
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2026 3.14159. Time is 12:30. "
    "<html><body><p>text</p></body></html> {\"name\": \"value\", \"list\": [1, 2, 3]} "
    "the the the and and of of to to in in is is it it that that for for with with on on ";

// Greedy BPE training over space-prefixed words in the GPT-2 byte alphabet.
std::vector<std::pair<std::string, std::string>> learn_merges(int64_t n_merges) {
  std::map<std::vector<std::string>, int64_t> words;
  std::string text(kCorpus);
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i + 1;
    while (j < text.size() && text[j] != ' ') ++j;
    std::vector<std::string> symbols;
    for (size_t b = i; b < j; ++b) symbols.push_back(gpt2_byte_symbol(static_cast<uint8_t>(text[b])));
    words[symbols]++;
    i = j;
  }
  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int64_t>(merges.size()) < n_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [symbols, count] : words) {
      for (size_t k = 0; k + 1 < symbols.size(); ++k) pairs[{symbols[k], symbols[k + 1]}] += count;
    }
    if (pairs.empty()) break;
    // Most frequent pair; std::map order makes ties deterministic.
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto [a, b] = best->first;
    merges.emplace_back(a, b);
    std::map<std::vector<std::string>, int64_t> next;
    for (const auto& [symbols, count] : words) {
      std::vector<std::string> merged;
      for (size_t k = 0; k < symbols.size(); ++k) {
        if (k + 1 < symbols.size() && symbols[k] == a && symbols[k + 1] == b) {
          merged.push_back(a + b);
          ++k;
        } else {
          merged.push_back(symbols[k]);
        }
      }
      next[merged] += count;
    }
    words = std::move(next);
  }
  return merges;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

}  // namespace

std::string gpt2_byte_symbol(uint8_t byte) {
  // Printable Latin-1 bytes stand for themselves; the others map to U+0100.. in byte order.
  auto printable = [](int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); };
  uint32_t cp = byte;
  if (!printable(byte)) {
    uint32_t n = 0;
    for (int b = 0; b < byte; ++b) n += printable(b) ? 0 : 1;
    cp = 256 + n;
  }
  std::string s;
  append_utf8(s, cp);
  return s;
}

int64_t synthetic_vocab_min_size() { return 3 + 256 + kNamedCount; }

Result<SyntheticVocab> make_synthetic_vocab(int64_t n_vocab) {
  if (n_vocab < synthetic_vocab_min_size()) {
    return make_error("synthetic vocabulary needs at least " +
                      std::to_string(synthetic_vocab_min_size()) + " tokens, asked for " +
                      std::to_string(n_vocab));
  }
  SyntheticVocab v;
  v.tokens = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"};
  v.types = {3, 3, 3};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(gpt2_byte_symbol(static_cast<uint8_t>(b)));
    v.types.push_back(1);
  }
  const int64_t n_merges = n_vocab - synthetic_vocab_min_size();
  std::set<std::string> seen(v.tokens.begin(), v.tokens.end());
  for (const auto& [a, b] : learn_merges(n_merges)) {
    if (!seen.insert(a + b).second) continue;
    v.tokens.push_back(a + b);
    v.types.push_back(1);
    v.merges.push_back(a + " " + b);
  }
  // If the corpus ran out of pairs, pad with unused placeholder tokens (V4 has many too).
  for (int64_t k = 0; static_cast<int64_t>(v.tokens.size()) + kNamedCount < n_vocab; ++k) {
    v.tokens.push_back("<｜place▁holder▁no▁" + std::to_string(k) + "｜>");
    v.types.push_back(4);
  }
  for (const char* named : kNamedTokens) {
    v.tokens.push_back(named);
    v.types.push_back(4);
  }
  return v;
}

}  // namespace dsv4::model

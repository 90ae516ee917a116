// Differential test against independent JavaScript tokenizers (tools/js/tokenize_corpus.mjs):
// >= 10 000 deterministic strings (random characters of many scripts, emoji, CJK/kana/Hangul,
// digits of many scripts, whitespace runs, source code, added-token strings, the official
// prompts and rendering goldens) must give exactly the reference ids, in plain and in
// special-token-aware mode, decode back to the input, and stream-decode to the input.
// Node.js and the npm packages are required: without them the test fails (CI installs them).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/unicode.h"
#include "v4_fixture.h"

namespace dsv4::tokenizer {
namespace {

constexpr int kSeed = 1;
constexpr int kCorpusSize = 10000;

namespace fs = std::filesystem;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Code point ranges our Unicode tables consider assigned (category other than Cn).
std::string assigned_ranges_json() {
  std::string out = "[";
  bool open = false;
  for (char32_t cp = 0; cp <= 0x110000; ++cp) {
    const bool assigned = cp <= 0x10FFFF && unicode::category(cp) != unicode::GeneralCategory::Cn;
    if (assigned && !open) {
      out += (out.size() > 1 ? ",[" : "[") + std::to_string(cp) + ",";
      open = true;
    } else if (!assigned && open) {
      out += std::to_string(cp - 1) + "]";
      open = false;
    }
  }
  return out + "]";
}

// Printable form of a test string for failure messages.
std::string escape(const std::string& s, size_t limit = 200) {
  std::string out;
  for (unsigned char c : s.substr(0, limit)) {
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return s.size() > limit ? out + "..." : out;
}

std::string ids_string(const std::vector<int32_t>& ids, size_t limit = 40) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < limit; ++i)
    out += (i ? "," : "") + std::to_string(ids[i]);
  return out + (ids.size() > limit ? ",...]" : "]");
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("dsv4_tokenizer_diff_" + std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(Differential, MatchesJavaScriptTokenizers) {
  DSV4_V4_TOKENIZER(tok);
  const std::string js_dir = std::string(DSV4_SOURCE_DIR) + "/tools/js";
  ASSERT_EQ(std::system("node --version > /dev/null 2>&1"), 0)
      << "node is not installed: the tokenizer differential test needs Node.js (scripts/setup.sh)";
  for (const char* pkg : {"@huggingface/tokenizers", "@lenml/tokenizers"}) {
    ASSERT_TRUE(fs::exists(js_dir + "/node_modules/" + pkg + "/package.json"))
        << pkg << " is not installed: run `npm ci` in tools/js (scripts/setup.sh does)";
  }

  TempDir tmp;
  const std::string ranges = (tmp.path() / "assigned.json").string();
  const std::string corpus = (tmp.path() / "corpus.json").string();
  std::ofstream(ranges) << assigned_ranges_json();
  const std::string shared = DSV4_SHARED_DIR;
  const std::string cmd = "node " + shell_quote(js_dir + "/tokenize_corpus.mjs") + " --seed " +
                          std::to_string(kSeed) + " --count " + std::to_string(kCorpusSize) +
                          " --added " +
                          shell_quote(shared + "/testdata/tokenizer/v4_added_tokens.json") +
                          " --prompts " + shell_quote(shared + "/testdata/official-api/prompts") +
                          " --prompts " + shell_quote(shared + "/testdata/encoding") +
                          " --assigned " + shell_quote(ranges) + " --out " + shell_quote(corpus);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "failed: " << cmd;

  std::ifstream in(corpus, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const auto j = nlohmann::json::parse(buffer.str(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "unreadable " << corpus;
  const auto& strings = j["strings"];
  ASSERT_GE(strings.size(), static_cast<size_t>(kCorpusSize));

  size_t mismatches = 0, second_opinion = 0, round_trip = 0, stream = 0;
  size_t bytes = 0, tokens = 0;
  for (const auto& s : strings) {
    const std::string text = s["text"].get<std::string>();
    const auto plain_ref = s["plain"].get<std::vector<int32_t>>();
    const auto special_ref = s["special"].get<std::vector<int32_t>>();
    const auto plain = tok.encode_text(text);
    const auto special = tok.encode_with_special(text);
    bytes += text.size();
    tokens += plain.size();
    if (plain != plain_ref || special != special_ref) {
      if (++mismatches <= 10) {
        ADD_FAILURE() << "text \"" << escape(text) << "\"\n  plain   ours " << ids_string(plain)
                      << "\n          ref  " << ids_string(plain_ref) << "\n  special ours "
                      << ids_string(special) << "\n          ref  " << ids_string(special_ref);
      }
    }
    if (!s["lenml_special"].is_null() &&
        s["lenml_special"].get<std::vector<int32_t>>() != special) {
      if (++second_opinion <= 10)
        ADD_FAILURE() << "transformers.js differs on \"" << escape(text) << "\"";
    }
    const auto back_plain = tok.decode(plain);
    const auto back_special = tok.decode(special);
    if (!back_plain.ok() || *back_plain != text || !back_special.ok() || *back_special != text) {
      if (++round_trip <= 10)
        ADD_FAILURE() << "decode does not round-trip \"" << escape(text) << "\"";
    }
    StreamDecoder dec(tok);
    std::string streamed;
    for (int32_t id : special) streamed += dec.push(id).value();
    streamed += dec.flush();
    if (streamed != text) {
      if (++stream <= 10) ADD_FAILURE() << "stream decode differs on \"" << escape(text) << "\"";
    }
  }
  std::printf(
      "differential: %zu strings (%zu bytes, %zu plain tokens), Node Unicode %s vs "
      "tables %s: %zu mismatches, %zu second-opinion mismatches, %zu round-trip and %zu "
      "stream failures\n",
      strings.size(), bytes, tokens, j["unicode"].get<std::string>().c_str(),
      unicode::kUnicodeVersion, mismatches, second_opinion, round_trip, stream);
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(second_opinion, 0u);
  EXPECT_EQ(round_trip, 0u);
  EXPECT_EQ(stream, 0u);
}

}  // namespace
}  // namespace dsv4::tokenizer

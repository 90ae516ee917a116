#include "tokenizer/hf_vocab.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dsv4::tokenizer {
namespace {

using nlohmann::json;

// The three Split regexes of PROTOCOL.md §1.4, as tokenizer.json spells them.
constexpr const char* kExpectedSplits[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

Result<json> read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  json j = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(path + ": not valid JSON");
  return j;
}

Status check_pipeline(const json& t) {
  const json& model = t.value("model", json::object());
  if (model.value("type", "") != "BPE") return make_error("model.type is not \"BPE\"");
  if (model.value("byte_fallback", false)) return make_error("model.byte_fallback is set");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() && model[key] != "") {
      return make_error(std::string("model.") + key + " is set");
    }
  }
  if (model.value("ignore_merges", false)) return make_error("model.ignore_merges is set");
  const json& norm = t.value("normalizer", json());
  if (!norm.is_null() &&
      !(norm.value("type", "") == "Sequence" && norm.value("normalizers", json::array()).empty())) {
    return make_error("a normalizer is configured; this tokenizer implements none");
  }
  const json& pre = t.value("pre_tokenizer", json());
  const json steps = pre.is_object() ? pre.value("pretokenizers", json::array()) : json::array();
  bool ok = pre.value("type", "") == "Sequence" && steps.size() == 4;
  for (size_t i = 0; ok && i < 3; ++i) {
    const json& s = steps[i];
    ok = s.value("type", "") == "Split" && s.value("behavior", "") == "Isolated" &&
         !s.value("invert", false) && s.contains("pattern") &&
         s["pattern"].value("Regex", "") == kExpectedSplits[i];
  }
  ok = ok && steps[3].value("type", "") == "ByteLevel" && !steps[3].value("use_regex", true) &&
       !steps[3].value("add_prefix_space", true);
  if (!ok) return make_error("pre_tokenizer is not the DeepSeek-V3 split (PROTOCOL.md §1.4)");
  return {};
}

struct Entry {
  std::string content;
  int32_t type;
};

}  // namespace

Result<Vocab> vocab_from_hf_json(const std::string& tokenizer_json,
                                 const std::string& added_tokens_json) {
  DSV4_ASSIGN_OR_RETURN(json t, read_json(tokenizer_json));
  auto fail = [&](const std::string& why) { return make_error(tokenizer_json + ": " + why); };
  if (!t.is_object()) return fail("not a tokenizer.json object");
  if (Status s = check_pipeline(t); !s.ok()) return fail(s.message());

  std::map<int64_t, Entry> entries;
  const json& model = t["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object()) return fail("model.vocab missing");
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) return fail("bad id for " + token);
    if (!entries.emplace(id.get<int64_t>(), Entry{token, kTokenNormal}).second) {
      return fail("id " + std::to_string(id.get<int64_t>()) + " used twice in model.vocab");
    }
  }

  Vocab vocab;
  if (!model.contains("merges") || !model["merges"].is_array()) return fail("model.merges missing");
  vocab.merges.reserve(model["merges"].size());
  for (const json& m : model["merges"]) {
    // Older files store "left right", newer ones ["left", "right"].
    if (m.is_string()) {
      vocab.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      vocab.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      return fail("model.merges entry " + std::to_string(vocab.merges.size()) + " malformed");
    }
  }

  // Added tokens: entries of the file's added_tokens, then of the extra table.
  auto add = [&](const json& a, const std::string& source, bool from_extra) -> Status {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0) {
      return make_error(source + ": malformed added token " + a.dump());
    }
    const int64_t id = a["id"].get<int64_t>();
    const std::string content = a["content"].get<std::string>();
    const int32_t type = a.value("special", false) ? kTokenControl : kTokenUserDefined;
    const auto it = entries.find(id);
    if (it == entries.end()) {
      entries.emplace(id, Entry{content, type});
      return {};
    }
    if (it->second.content != content) {
      return make_error(source + ": added token " + std::to_string(id) + " \"" + content +
                        "\" conflicts with \"" + it->second.content + "\"");
    }
    // Same string again: the HF file marks it added (ids 0-2 are in both lists); the extra
    // table only confirms an existing entry.
    if (!from_extra) it->second.type = type;
    return {};
  };
  for (const json& a : t.value("added_tokens", json::array())) {
    DSV4_TRY(add(a, tokenizer_json, false));
  }
  if (!added_tokens_json.empty()) {
    DSV4_ASSIGN_OR_RETURN(json extra, read_json(added_tokens_json));
    if (!extra.is_array()) return make_error(added_tokens_json + ": expected a JSON array");
    for (const json& a : extra) DSV4_TRY(add(a, added_tokens_json, true));
  }

  if (entries.empty()) return fail("empty vocabulary");
  const int64_t size = entries.rbegin()->first + 1;
  if (size != static_cast<int64_t>(entries.size())) {
    int64_t expect = 0;
    for (const auto& [id, e] : entries) {
      if (id != expect) break;
      ++expect;
    }
    return fail("token id " + std::to_string(expect) + " is not defined (ids must be 0.." +
                std::to_string(size - 1) + ")");
  }
  vocab.tokens.reserve(entries.size());
  vocab.types.reserve(entries.size());
  for (auto& [id, e] : entries) {
    vocab.tokens.push_back(std::move(e.content));
    vocab.types.push_back(e.type);
  }
  return vocab;
}

}  // namespace dsv4::tokenizer

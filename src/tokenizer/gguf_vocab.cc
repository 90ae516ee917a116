#include "tokenizer/gguf_vocab.h"

#include <string_view>

#include "tokenizer/special_tokens.h"

namespace dsv4::tokenizer {
namespace {

const gguf::Value* find(const std::vector<std::pair<std::string, gguf::Value>>& metadata,
                        std::string_view key) {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

bool is_integer_type(gguf::ValueType t) {
  switch (t) {
    case gguf::ValueType::U8:
    case gguf::ValueType::I8:
    case gguf::ValueType::U16:
    case gguf::ValueType::I16:
    case gguf::ValueType::U32:
    case gguf::ValueType::I32:
    case gguf::ValueType::U64:
    case gguf::ValueType::I64:
      return true;
    default:
      return false;
  }
}

Error key_error(std::string_view key, std::string_view what) {
  return make_error("tokenizer: " + std::string(key) + ": " + std::string(what));
}

Result<std::vector<std::string>> string_array(
    const std::vector<std::pair<std::string, gguf::Value>>& metadata, std::string_view key) {
  const gguf::Value* v = find(metadata, key);
  if (!v) return key_error(key, "missing");
  if (v->type != gguf::ValueType::ARRAY || v->element_type != gguf::ValueType::STRING) {
    return key_error(key, "expected an array of strings");
  }
  return v->strings;
}

}  // namespace

Result<Vocab> vocab_from_gguf_metadata(
    const std::vector<std::pair<std::string, gguf::Value>>& metadata) {
  if (const gguf::Value* model = find(metadata, "tokenizer.ggml.model")) {
    if (model->type != gguf::ValueType::STRING || model->s != "gpt2") {
      return key_error("tokenizer.ggml.model",
                       "expected \"gpt2\" (byte-level BPE), found \"" + model->s + "\"");
    }
  }
  if (const gguf::Value* pre = find(metadata, "tokenizer.ggml.pre")) {
    bool known = false;
    for (const char* name : kSupportedPre)
      known = known || (pre->type == gguf::ValueType::STRING && pre->s == name);
    if (!known) {
      std::string names;
      for (const char* name : kSupportedPre) names += std::string(names.empty() ? "" : ", ") + name;
      return key_error(
          "tokenizer.ggml.pre",
          "\"" + pre->s + "\" is not a DeepSeek-V3/V4 pre-tokenizer (supported: " + names + ")");
    }
  }
  Vocab vocab;
  DSV4_ASSIGN_OR_RETURN(vocab.tokens, string_array(metadata, "tokenizer.ggml.tokens"));
  DSV4_ASSIGN_OR_RETURN(vocab.merges, string_array(metadata, "tokenizer.ggml.merges"));
  if (const gguf::Value* types = find(metadata, "tokenizer.ggml.token_type")) {
    if (types->type != gguf::ValueType::ARRAY || !is_integer_type(types->element_type)) {
      return key_error("tokenizer.ggml.token_type", "expected an array of integers");
    }
    if (types->ints.size() != vocab.tokens.size()) {
      return key_error("tokenizer.ggml.token_type",
                       std::to_string(types->ints.size()) + " entries for " +
                           std::to_string(vocab.tokens.size()) + " tokens");
    }
    vocab.types.reserve(types->ints.size());
    for (int64_t t : types->ints) {
      if (t < kTokenNormal || t > kTokenByte) {
        return key_error("tokenizer.ggml.token_type",
                         "value " + std::to_string(t) + " outside 1..6");
      }
      vocab.types.push_back(static_cast<int32_t>(t));
    }
  }
  return vocab;
}

Result<Tokenizer> Tokenizer::from_gguf(const gguf::File& file) {
  auto vocab = vocab_from_gguf_metadata(file.metadata());
  if (!vocab.ok()) return vocab.error().with_context(file.label());
  auto tok = from_vocab(std::move(vocab).value());
  if (!tok.ok()) return tok.error().with_context(file.label());
  return tok;
}

void write_vocab_to_gguf(const Vocab& vocab, gguf::Writer& writer) {
  writer.set("tokenizer.ggml.model", gguf::Value::make_string("gpt2"));
  writer.set("tokenizer.ggml.pre", gguf::Value::make_string(kSupportedPre[0]));
  writer.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(vocab.tokens));
  if (!vocab.types.empty()) {
    std::vector<int64_t> types(vocab.types.begin(), vocab.types.end());
    writer.set("tokenizer.ggml.token_type",
               gguf::Value::make_int_array(gguf::ValueType::I32, std::move(types)));
  }
  writer.set("tokenizer.ggml.merges", gguf::Value::make_string_array(vocab.merges));
  auto id_of = [&](std::string_view s) -> int64_t {
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
      if (vocab.tokens[i] == s) return static_cast<int64_t>(i);
    }
    return -1;
  };
  if (const int64_t bos = id_of(kBosString); bos >= 0) {
    writer.set("tokenizer.ggml.bos_token_id", gguf::Value::make_u32(static_cast<uint32_t>(bos)));
  }
  if (const int64_t eos = id_of(kEosString); eos >= 0) {
    writer.set("tokenizer.ggml.eos_token_id", gguf::Value::make_u32(static_cast<uint32_t>(eos)));
  }
}

}  // namespace dsv4::tokenizer

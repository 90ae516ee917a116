#include "chat/typed_text.h"

namespace dsv4::chat {
namespace {

constexpr char kEscape = static_cast<char>(kTypedTextEscape);

bool written_as_escape(int32_t id, const tokenizer::Tokenizer& tokenizer) {
  return !tokenizer.valid_id(id) || tokenizer.is_added(id) ||
         tokenizer.piece(id).find(kEscape) != std::string::npos;
}

void append_escape(int32_t id, std::string& out) {
  out.push_back(kEscape);
  const uint32_t u = static_cast<uint32_t>(id);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
}

void append_token(int32_t id, const tokenizer::Tokenizer& tokenizer, std::string& out) {
  if (written_as_escape(id, tokenizer)) {
    append_escape(id, out);
  } else {
    out.append(tokenizer.piece(id));
  }
}

// Text between two control tokens, as prompt_token_ids BPEs it in one run. Only text holding a
// 0xFF byte needs the actual tokens (the tokens containing that byte are escaped); any other
// text is its own typed text, since byte-level BPE pieces concatenate back to it.
void append_run(std::string_view run, const tokenizer::Tokenizer& tokenizer, std::string& out) {
  if (run.find(kEscape) == std::string_view::npos) {
    out.append(run);
    return;
  }
  for (int32_t id : tokenizer.encode_text(run)) append_token(id, tokenizer, out);
}

}  // namespace

std::string typed_text(std::span<const int32_t> tokens, const tokenizer::Tokenizer& tokenizer) {
  std::string out;
  for (int32_t id : tokens) append_token(id, tokenizer, out);
  return out;
}

std::string typed_text(const RenderedPrompt& prompt, const tokenizer::Tokenizer& tokenizer) {
  std::string out;
  std::string run;
  auto add_token = [&](int32_t id) {
    append_run(run, tokenizer, out);
    run.clear();
    append_escape(id, out);
  };
  for (const Segment& s : prompt.segments) {
    if (s.is_control) {
      if (std::optional<int32_t> id = tokenizer.token_id(s.text)) {
        add_token(*id);
      } else {
        run.append(s.text);
      }
    } else if (s.from_client) {
      run.append(s.text);
    } else {
      for (const tokenizer::Tokenizer::Segment& part : tokenizer.split_special(s.text)) {
        if (part.id >= 0) {
          add_token(part.id);
        } else {
          run.append(part.text);
        }
      }
    }
  }
  append_run(run, tokenizer, out);
  return out;
}

Result<std::vector<int32_t>> tokens_from_typed_text(std::string_view typed,
                                                    const tokenizer::Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos < typed.size()) {
    const size_t escape = typed.find(kEscape, pos);
    const size_t text_end = escape == std::string_view::npos ? typed.size() : escape;
    if (text_end > pos) tokenizer.append_text(typed.substr(pos, text_end - pos), ids);
    if (escape == std::string_view::npos) break;
    if (typed.size() - escape < 5) {
      return make_error("typed text: truncated escape at byte " + std::to_string(escape) + " (" +
                        std::to_string(typed.size() - escape - 1) + " of 4 id bytes)");
    }
    uint32_t u = 0;
    for (int i = 0; i < 4; ++i) u |= static_cast<uint32_t>(static_cast<uint8_t>(typed[escape + 1 + i])) << (8 * i);
    const int32_t id = static_cast<int32_t>(u);
    if (!tokenizer.valid_id(id)) {
      return make_error("typed text: escape at byte " + std::to_string(escape) + " names token id " +
                        std::to_string(u) + ", outside the vocabulary of " +
                        std::to_string(tokenizer.vocab_size()));
    }
    if (!written_as_escape(id, tokenizer)) {
      return make_error("typed text: escape at byte " + std::to_string(escape) + " names token " +
                        std::to_string(id) + ", which typed text writes as its bytes");
    }
    ids.push_back(id);
    pos = escape + 5;
  }
  return ids;
}

}  // namespace dsv4::chat

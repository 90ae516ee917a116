// dsv4 tokenize: the token ids and pieces of a text under a model's vocabulary. Plain mode
// treats added-token strings as text (as user content is treated); --special recognises them
// (as in a rendered prompt or a raw completion prompt).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv4::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool special = false;
  bool json = false;
};

Result<std::string> read_input(const TokenizeOptions& o, bool from_file) {
  if (!from_file) return o.text;
  if (o.file == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(o.file, std::ios::binary);
  if (!in) return make_error(o.file + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A piece for a terminal: printable UTF-8 as is, other bytes escaped, so that partial
// characters and control bytes stay visible.
std::string escape_piece(const std::string& piece) {
  std::string out;
  size_t pos = 0;
  while (pos < piece.size()) {
    const auto d = tokenizer::utf8::decode(piece, pos);
    const auto c = static_cast<unsigned char>(piece[pos]);
    if (d.valid && d.cp >= 0x20 && d.cp != 0x7F && d.cp != '\\') {
      out.append(piece, pos, d.length);
      pos += d.length;
      continue;
    }
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      }
    }
    ++pos;
  }
  return out;
}

Status run(const TokenizeOptions& o, bool from_file) {
  DSV4_ASSIGN_OR_RETURN(std::string text, read_input(o, from_file));
  DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(o.model));
  DSV4_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::from_gguf(file));
  const std::vector<int32_t> ids =
      o.special ? tok.encode_with_special(text) : tok.encode_text(text);
  if (o.json) {
    nlohmann::json tokens = nlohmann::json::array();
    for (int32_t id : ids) {
      // "text" is what the token contributes (U+FFFD where it splits a character); "token" is
      // its vocabulary spelling, which is lossless.
      tokens.push_back({{"id", id},
                        {"token", tok.token(id)},
                        {"text", tokenizer::utf8::replace_invalid(tok.piece(id))},
                        {"added", tok.is_added(id)}});
    }
    const nlohmann::json out = {{"count", ids.size()}, {"ids", ids}, {"tokens", tokens}};
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    for (int32_t id : ids) std::printf("%d\t%s\n", id, escape_piece(tok.piece(id)).c_str());
    std::fprintf(stderr, "%zu tokens\n", ids.size());
  }
  return Status();
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids and pieces of a text");
  cmd->add_option("--model,-m", o->model, "GGUF model (only its tokenizer keys are read)")
      ->required();
  auto* text = cmd->add_option("--text,-t", o->text, "Text to tokenize");
  auto* file = cmd->add_option("--file,-f", o->file, "File to tokenize ('-' for standard input)");
  text->excludes(file);
  cmd->add_flag("--special", o->special,
                "Recognise added-token strings such as <｜User｜> (default: plain text)");
  cmd->add_flag("--json", o->json, "One JSON object: count, ids, and per token id/token/text");
  cmd->callback([o, text, file] {
    if (text->count() == 0 && file->count() == 0) {
      std::fprintf(stderr, "dsv4 tokenize: give --text or --file\n");
      set_exit_code(2);
      return;
    }
    Status s = run(*o, file->count() > 0);
    if (!s.ok()) std::fprintf(stderr, "dsv4 tokenize: %s\n", s.message().c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli

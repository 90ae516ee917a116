// Realistic inputs for the tokenizer speed checks (speed_test.cc) and benchmark
// (bench/tokenizer_bench.cc): English prose, C++ source code, and a rendered coding-agent
// prompt. All come from files in the repository and shared/testdata, so the figures are
// reproducible.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace dsv4::tokenizer::speed_inputs {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline nlohmann::json claude_code_request() {
  return nlohmann::json::parse(
      read_file(std::string(DSV4_SHARED_DIR) + "/testdata/agent-requests/claude-tool/003.json"),
      nullptr, false);
}

// English prose: Claude Code's system prompt and tool descriptions (markdown-flavoured
// instructions) and the long archive prompt of the official API vectors.
inline std::string prose_text() {
  std::string out;
  const auto req = claude_code_request();
  if (!req.is_discarded()) {
    for (const auto& part : req["body"]["system"]) out += part.value("text", "") + "\n\n";
    for (const auto& tool : req["body"]["tools"]) out += tool.value("description", "") + "\n\n";
  }
  out += read_file(std::string(DSV4_SHARED_DIR) +
                   "/testdata/official-api/prompts/long_memory_archive.txt");
  return out;
}

// C++ source code: the hand-written sources of a few modules (generated tables excluded),
// in a fixed order.
inline std::string code_text() {
  std::vector<std::filesystem::path> files;
  for (const char* dir : {"src/util", "src/gguf", "src/tokenizer", "tests/tokenizer"}) {
    const std::filesystem::path root = std::filesystem::path(DSV4_SOURCE_DIR) / dir;
    if (!std::filesystem::exists(root)) continue;
    for (const auto& e : std::filesystem::directory_iterator(root)) {
      const auto name = e.path().filename().string();
      if ((e.path().extension() == ".cc" || e.path().extension() == ".h") &&
          name.find("tables") == std::string::npos) {
        files.push_back(e.path());
      }
    }
  }
  std::sort(files.begin(), files.end());
  std::string out;
  for (const auto& f : files) out += read_file(f.string());
  return out;
}

// A coding-agent prompt rendered roughly as the chat layer will (system text, the tools block
// with JSON schemas, the conversation, control tokens), repeated and cut to `bytes` at a
// character boundary.
inline std::string agent_prompt(size_t bytes) {
  const auto req = claude_code_request();
  std::string once = "<｜begin▁of▁sentence｜>";
  if (!req.is_discarded()) {
    for (const auto& part : req["body"]["system"]) once += part.value("text", "") + "\n\n";
    once += "## Tools\n\nYou have access to the following tools:\n\n";
    for (const auto& tool : req["body"]["tools"]) {
      once += "### " + tool.value("name", "") + "\n" + tool.value("description", "") + "\n" +
              tool["input_schema"].dump() + "\n\n";
    }
    for (const auto& m : req["body"]["messages"]) {
      once += m.value("role", "") == "user" ? "<｜User｜>" : "<｜Assistant｜></think>";
      once += m["content"].is_string() ? m["content"].get<std::string>() : m["content"].dump();
    }
  }
  once += "<｜Assistant｜></think>";
  std::string out;
  while (out.size() < bytes) out += once;
  size_t cut = bytes;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
  out.resize(cut);
  return out;
}

}  // namespace dsv4::tokenizer::speed_inputs

// Shared helpers for the chat tests.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "chat/json_text.h"

namespace dsv4::chat::testing {

inline std::string shared_path(const std::string& rel) {
  return std::string(DSV4_SHARED_DIR) + "/" + rel;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline Json read_json(const std::string& path) {
  auto r = parse_json(read_file(path));
  EXPECT_TRUE(r.ok()) << path << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Json();
}

}  // namespace dsv4::chat::testing

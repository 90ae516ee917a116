// A small leveled logger: one line per message on stderr, with a UTC timestamp and the level,
// written whole under a lock so that lines from several threads never interleave. Tests can
// route the lines elsewhere to check what was logged.
#pragma once

#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

namespace dsv4::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug" | "info" | "warn" | "error".
std::optional<Level> parse_level(std::string_view name);
const char* level_name(Level level);

// Messages below the level are dropped (default: info).
void set_level(Level level);
Level level();
bool enabled(Level level);

// Where lines go: stderr by default; a sink receives the level and the message without the
// timestamp. An empty function restores stderr.
using Sink = std::function<void(Level, std::string_view)>;
void set_sink(Sink sink);

void write(Level level, std::string_view message);

// Concatenates the arguments with operator<< (numbers, strings, anything streamable).
template <class... Args>
void print(Level level, Args&&... args) {
  if (!enabled(level)) return;
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  write(level, out.str());
}

template <class... Args>
void debug(Args&&... args) {
  print(Level::kDebug, std::forward<Args>(args)...);
}
template <class... Args>
void info(Args&&... args) {
  print(Level::kInfo, std::forward<Args>(args)...);
}
template <class... Args>
void warn(Args&&... args) {
  print(Level::kWarn, std::forward<Args>(args)...);
}
template <class... Args>
void error(Args&&... args) {
  print(Level::kError, std::forward<Args>(args)...);
}

}  // namespace dsv4::log

#include "server/sse.h"

namespace dsv4::server {

std::string to_wire_json(const chat::Json& value) {
  return value.dump(-1, ' ', false, chat::Json::error_handler_t::replace);
}

std::string sse_data(const chat::Json& value) {
  std::string out = "data: ";
  out += to_wire_json(value);
  out += "\n\n";
  return out;
}

std::string sse_event(std::string_view name, const chat::Json& value) {
  std::string out = "event: ";
  out += name;
  out += "\ndata: ";
  out += to_wire_json(value);
  out += "\n\n";
  return out;
}

std::string sse_done() { return "data: [DONE]\n\n"; }

std::string sse_prefill_comment() { return ": prefill\n\n"; }

}  // namespace dsv4::server

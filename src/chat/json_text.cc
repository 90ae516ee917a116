#include "chat/json_text.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <vector>

namespace dsv4::chat {
namespace {

// Deeper documents are refused: the writer recurses, and no request needs this much nesting.
constexpr size_t kMaxDepth = 512;

// Builds an ordered_json through the SAX interface so that two things nlohmann's own DOM parser
// loses survive: integers wider than 64 bits (kept as digits) and the first-position /
// last-value rule for duplicated keys (ordered_map::operator[] already gives that).
class OrderedBuilder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  bool null() { return put(Json(nullptr)); }
  bool boolean(bool v) { return put(Json(v)); }
  bool number_integer(number_integer_t v) { return put(Json(v)); }
  bool number_unsigned(number_unsigned_t v) { return put(Json(v)); }
  bool number_float(number_float_t v, const string_t& lexeme) {
    if (lexeme.find_first_of(".eE") == string_t::npos) {
      // An integer literal that overflowed 64 bits: keep its digits, as Python's int would.
      std::string digits = lexeme;
      if (digits == "-0") digits = "0";
      return put(Json::binary(std::vector<std::uint8_t>(digits.begin(), digits.end()),
                              kBigIntegerSubtype));
    }
    return put(Json(v));
  }
  bool string(string_t& v) { return put(Json(std::move(v))); }
  bool binary(binary_t& v) { return put(Json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(Json::object()); }
  bool key(string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) {
    if (error_.empty()) error_ = ex.what();
    (void)position;
    (void)last_token;
    return false;
  }

  Json& root() { return root_; }
  const std::string& error() const { return error_; }

 private:
  // Places a value at the current position and returns where it now lives.
  Json* place(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    Json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool put(Json v) {
    place(std::move(v));
    return true;
  }
  bool open(Json container) {
    if (stack_.size() >= kMaxDepth) {
      error_ = "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels";
      return false;
    }
    stack_.push_back(place(std::move(container)));
    return true;
  }

  Json root_;
  std::vector<Json*> stack_;
  std::string key_;
  std::string error_;
};

void append_number_float(std::string& out, double v) { out += python_float_repr(v); }

}  // namespace

Result<Json> parse_json(std::string_view text) {
  OrderedBuilder builder;
  bool ok = Json::sax_parse(text.begin(), text.end(), &builder, Json::input_format_t::json,
                            /*strict=*/true, /*ignore_comments=*/false);
  if (!ok) {
    std::string why = builder.error().empty() ? "invalid JSON" : builder.error();
    return make_error("invalid JSON: " + why);
  }
  return std::move(builder.root());
}

bool is_big_integer(const Json& value) {
  return value.is_binary() && value.get_binary().has_subtype() &&
         value.get_binary().subtype() == kBigIntegerSubtype;
}

void append_python_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits in scientific form, e.g. "-1.2345e+02"; then re-laid out the way
  // Python's float_repr_style 'short' does.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  if (!sci.empty() && sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos)) {
    if (c != '.') digits += c;
  }
  int exp10 = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+' ? 1 : 0), sci.data() + sci.size(),
                  exp10);
  // Value = 0.DIGITS * 10^decpt, as in Python's float_repr.
  int decpt = exp10 + 1;
  int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    int e = decpt - 1;
    out += e < 0 ? "e-" : "e+";
    int a = e < 0 ? -e : e;
    if (a < 10) out += '0';
    out += std::to_string(a);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else if (decpt >= n) {
    out += digits;
    out.append(static_cast<size_t>(decpt - n), '0');
    out += ".0";
  } else {
    out.append(digits, 0, static_cast<size_t>(decpt));
    out += '.';
    out.append(digits, static_cast<size_t>(decpt), std::string::npos);
  }
  return out;
}

void append_python_json(std::string& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      out += "null";
      break;
    case Json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case Json::value_t::number_integer:
      out += std::to_string(v.get<std::int64_t>());
      break;
    case Json::value_t::number_unsigned:
      out += std::to_string(v.get<std::uint64_t>());
      break;
    case Json::value_t::number_float:
      append_number_float(out, v.get<double>());
      break;
    case Json::value_t::string:
      out += '"';
      append_python_escaped(out, v.get_ref<const std::string&>());
      out += '"';
      break;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        append_python_json(out, e);
      }
      out += ']';
      break;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += '"';
        append_python_escaped(out, k);
        out += "\": ";
        append_python_json(out, e);
      }
      out += '}';
      break;
    }
    case Json::value_t::binary:
      if (is_big_integer(v)) {
        const auto& b = v.get_binary();
        out.append(b.begin(), b.end());
      } else {
        // Not producible from JSON text; Python has no JSON form for bytes either.
        out += "null";
      }
      break;
    case Json::value_t::discarded:
      out += "null";
      break;
  }
}

std::string string_field(const Json& obj, std::string_view key, std::string_view fallback) {
  if (!obj.is_object()) return std::string(fallback);
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::string(fallback);
  return it->get<std::string>();
}

std::string to_python_json(const Json& value) {
  std::string out;
  append_python_json(out, value);
  return out;
}

}  // namespace dsv4::chat

#include "chat/dsml_render.h"

namespace dsv4::chat {

std::vector<ToolParameter> tool_call_parameters(const ToolCall& call) {
  std::vector<ToolParameter> params;
  auto parsed = parse_json(call.arguments);
  if (!parsed.ok() || !parsed->is_object()) {
    // The reference falls back to the raw text for unparsable arguments; dsv4 extends that to
    // valid JSON that is not an object (the reference would raise, §2.8).
    params.push_back({"arguments", Json(call.arguments)});
    return params;
  }
  for (auto it = parsed->begin(); it != parsed->end(); ++it) {
    params.push_back({it.key(), it.value()});
  }
  return params;
}

void render_tool_calls(const std::vector<ToolCall>& calls, PromptBuilder& out) {
  if (calls.empty()) return;
  out.add_template("\n\n<｜DSML｜tool_calls>\n");
  bool first_call = true;
  for (const ToolCall& call : calls) {
    if (!first_call) out.add_template("\n");
    first_call = false;
    out.add_template("<｜DSML｜invoke name=\"");
    out.add_client(call.name);
    out.add_template("\">\n");
    auto params = tool_call_parameters(call);
    bool first_param = true;
    for (const ToolParameter& p : params) {
      if (!first_param) out.add_template("\n");
      first_param = false;
      out.add_template("<｜DSML｜parameter name=\"");
      out.add_client(p.name);
      if (p.value.is_string()) {
        out.add_template("\" string=\"true\">");
        out.add_client(p.value.get_ref<const std::string&>());
      } else {
        out.add_template("\" string=\"false\">");
        out.add_client(to_python_json(p.value));
      }
      out.add_template("</｜DSML｜parameter>");
    }
    // With no parameters the reference still writes both newlines: "...\">\n\n</｜DSML｜invoke>".
    out.add_template("\n</｜DSML｜invoke>");
  }
  out.add_template("\n</｜DSML｜tool_calls>");
}

std::string render_tool_calls_text(const std::vector<ToolCall>& calls) {
  PromptBuilder b;
  render_tool_calls(calls, b);
  return b.take().text;
}

}  // namespace dsv4::chat

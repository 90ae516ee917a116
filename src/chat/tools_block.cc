#include "chat/tools_block.h"

#include <string>

namespace dsv4::chat {
namespace {

// Exact wording of the official encoder (§2.7); a golden test pins every byte.
constexpr std::string_view kToolsHead =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools "
    "by writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE"
    "</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set "
    "`string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";

constexpr std::string_view kToolsTail =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke "
    "tool calls.\n";

constexpr std::string_view kResponseFormatHead =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

}  // namespace

Status validate_tools(const Json& tools, std::string_view where) {
  if (tools.is_null()) return {};
  if (!tools.is_array()) return make_error(std::string(where) + ": tools must be an array");
  for (size_t i = 0; i < tools.size(); ++i) {
    std::string at = std::string(where) + ".tools[" + std::to_string(i) + "]";
    const Json& t = tools[i];
    if (!t.is_object()) return make_error(at + ": a tool must be an object");
    auto f = t.find("function");
    if (f == t.end() || !f->is_object()) {
      return make_error(at + ": a tool needs a \"function\" object");
    }
    auto name = f->find("name");
    if (name == f->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      return make_error(at + ".function: missing tool name");
    }
    auto params = f->find("parameters");
    if (params != f->end() && !params->is_object()) {
      return make_error(at + ".function.parameters: the schema must be a JSON object");
    }
  }
  return {};
}

void render_tools_block(const Json& tools, PromptBuilder& out) {
  out.add_template(kToolsHead);
  bool first = true;
  for (const Json& t : tools) {
    if (!first) out.add_template("\n");
    first = false;
    out.add_client(to_python_json(t.at("function")));
  }
  out.add_template(kToolsTail);
}

void render_response_format(const Json& response_format, PromptBuilder& out) {
  out.add_template(kResponseFormatHead);
  out.add_client(to_python_json(response_format));
}

}  // namespace dsv4::chat

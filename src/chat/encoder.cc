#include "chat/encoder.h"

#include <algorithm>
#include <map>
#include <string>

#include "chat/dsml_render.h"
#include "chat/effort.h"
#include "chat/special_tokens.h"
#include "chat/tools_block.h"
#include "chat/utf8.h"

namespace dsv4::chat {
namespace {

// One piece of a merged user turn: the user's own text, or a tool result.
struct Block {
  bool is_tool_result = false;
  std::string text;
  std::optional<std::vector<ContentPart>> parts;  // a tool result given as a list of parts
  std::string tool_use_id;
};

// A message after merge_tool_messages: user turns carry their content as blocks.
struct Entry {
  Message m;
  std::optional<std::vector<Block>> blocks;
};

bool has_tools(const Message& m) { return m.tools.is_array() && !m.tools.empty(); }

// §2.2 step 1: tool results and the user text around them collapse into one user turn.
std::vector<Entry> merge_tool_messages(const std::vector<Message>& messages) {
  std::vector<Entry> out;
  for (const Message& msg : messages) {
    Entry* prev = out.empty() ? nullptr : &out.back();
    bool prev_user_blocks = prev && prev->m.role == Role::user && prev->blocks.has_value();
    if (msg.role == Role::tool) {
      Block b{true, msg.content, msg.content_parts, msg.tool_call_id};
      if (prev_user_blocks) {
        prev->blocks->push_back(std::move(b));
      } else {
        Entry e;
        e.m.role = Role::user;
        e.blocks.emplace().push_back(std::move(b));
        out.push_back(std::move(e));
      }
    } else if (msg.role == Role::user) {
      Block b{false, msg.content, std::nullopt, {}};
      // A user message with a task stands alone; a later user message's task and wo_eos are
      // lost when it is appended to an earlier turn (the reference does the same).
      if (prev_user_blocks && prev->m.task == Task::none) {
        prev->blocks->push_back(std::move(b));
      } else {
        Entry e;
        e.m.role = Role::user;
        e.m.content = msg.content;
        e.m.task = msg.task;
        e.m.wo_eos = msg.wo_eos;
        e.blocks.emplace().push_back(std::move(b));
        out.push_back(std::move(e));
      }
    } else {
      out.push_back(Entry{msg, std::nullopt});
    }
  }
  return out;
}

// §2.2 step 2: parallel tool results are put in the order of the calls that produced them.
void sort_tool_results_by_call_order(std::vector<Entry>& full) {
  std::map<std::string, size_t> call_index;
  for (Entry& e : full) {
    if (e.m.role == Role::assistant && !e.m.tool_calls.empty()) {
      call_index.clear();
      for (size_t i = 0; i < e.m.tool_calls.size(); ++i) {
        const std::string& id = e.m.tool_calls[i].id;
        if (!id.empty()) call_index[id] = i;
      }
      continue;
    }
    if (e.m.role != Role::user || !e.blocks || call_index.empty()) continue;
    std::vector<size_t> slots;
    for (size_t i = 0; i < e.blocks->size(); ++i) {
      if ((*e.blocks)[i].is_tool_result) slots.push_back(i);
    }
    if (slots.size() <= 1) continue;
    std::vector<Block> results;
    for (size_t s : slots) results.push_back((*e.blocks)[s]);
    auto key = [&](const Block& b) {
      auto it = call_index.find(b.tool_use_id);
      return it == call_index.end() ? size_t{0} : it->second;
    };
    std::stable_sort(results.begin(), results.end(),
                     [&](const Block& a, const Block& b) { return key(a) < key(b); });
    for (size_t k = 0; k < slots.size(); ++k) (*e.blocks)[slots[k]] = std::move(results[k]);
  }
}

long last_user_index(const std::vector<Entry>& list) {
  for (size_t i = list.size(); i-- > 0;) {
    if (list[i].m.role == Role::user || list[i].m.role == Role::developer) {
      return static_cast<long>(i);
    }
  }
  return -1;
}

// §2.3: earlier assistant turns lose their reasoning, earlier developer turns disappear.
std::vector<Entry> drop_thinking_messages(const std::vector<Entry>& list) {
  long last_user = last_user_index(list);
  std::vector<Entry> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const Entry& e = list[i];
    Role r = e.m.role;
    if (r == Role::user || r == Role::system || r == Role::tool || r == Role::latest_reminder ||
        static_cast<long>(i) >= last_user) {
      out.push_back(e);
    } else if (r == Role::assistant) {
      Entry copy = e;
      copy.m.reasoning_content.clear();
      out.push_back(std::move(copy));
    }
  }
  return out;
}

std::string_view task_token(Task task) {
  switch (task) {
    case Task::action:
      return tok::kAction;
    case Task::query:
      return tok::kQuery;
    case Task::authority:
      return tok::kAuthority;
    case Task::domain:
      return tok::kDomain;
    case Task::title:
      return tok::kTitle;
    case Task::read_url:
      return tok::kReadUrl;
    case Task::none:
      break;
  }
  return {};
}

// Everything one message's rendering depends on besides the message itself.
struct RenderContext {
  const std::vector<Entry>& list;
  long last_user;
  bool thinking;
  bool drop_thinking;  // the effective value (false whenever tools are present)
  std::string_view effort_prefix;
};

void render_system_sections(const Message& m, PromptBuilder& out) {
  if (has_tools(m)) {
    out.add_template("\n\n");
    render_tools_block(m.tools, out);
  }
  if (m.response_format) {
    out.add_template("\n\n");
    render_response_format(*m.response_format, out);
  }
}

void render_tool_result(const Block& b, PromptBuilder& out) {
  out.add_template("<tool_result>");
  if (b.parts) {
    bool first = true;
    for (const ContentPart& p : *b.parts) {
      if (!first) out.add_template("\n\n");
      first = false;
      if (p.type == "text") {
        out.add_client(p.text);
      } else {
        out.add_template("[Unsupported ");
        out.add_client(p.type);
        out.add_template("]");
      }
    }
  } else {
    out.add_client(b.text);
  }
  out.add_template("</tool_result>");
}

// §2.4 (the message) and §2.5 (the transition after it).
void render_message(const RenderContext& ctx, size_t i, PromptBuilder& out) {
  const Entry& e = ctx.list[i];
  const Message& m = e.m;
  long index = static_cast<long>(i);

  if (i == 0 && ctx.thinking && !ctx.effort_prefix.empty()) out.add_template(ctx.effort_prefix);

  switch (m.role) {
    case Role::system:
      out.add_client(m.content);
      render_system_sections(m, out);
      break;
    case Role::developer:
      out.add_template(tok::kUser);
      out.add_client(m.content);
      render_system_sections(m, out);
      break;
    case Role::user:
      out.add_template(tok::kUser);
      if (e.blocks) {
        bool first = true;
        for (const Block& b : *e.blocks) {
          if (!first) out.add_template("\n\n");
          first = false;
          if (b.is_tool_result) {
            render_tool_result(b, out);
          } else {
            out.add_client(b.text);
          }
        }
      } else {
        out.add_client(m.content);
      }
      break;
    case Role::latest_reminder:
      out.add_template(tok::kLatestReminder);
      out.add_client(m.content);
      break;
    case Role::assistant: {
      bool after_task = i > 0 && ctx.list[i - 1].m.task != Task::none;
      if (ctx.thinking && !after_task && (!ctx.drop_thinking || index > ctx.last_user)) {
        out.add_client(m.reasoning_content);
        out.add_template(tok::kThinkClose);
      }
      out.add_client(m.content);
      render_tool_calls(m.tool_calls, out);
      if (!m.wo_eos) out.add_template(tok::kEos);
      break;
    }
    case Role::tool:  // merged away before rendering
      break;
  }

  bool is_last = i + 1 == ctx.list.size();
  if (!is_last) {
    Role next = ctx.list[i + 1].m.role;
    if (next != Role::assistant && next != Role::latest_reminder) return;
  }
  if (m.task == Task::action) {
    out.add_template(tok::kAssistant);
    out.add_template(ctx.thinking ? tok::kThinkOpen : tok::kThinkClose);
    out.add_template(tok::kAction);
  } else if (m.task != Task::none) {
    out.add_template(task_token(m.task));
  } else if (m.role == Role::user || m.role == Role::developer) {
    out.add_template(tok::kAssistant);
    bool open = ctx.thinking && (!ctx.drop_thinking || index >= ctx.last_user);
    out.add_template(open ? tok::kThinkOpen : tok::kThinkClose);
  }
}

Status check_utf8(std::string_view text, std::string_view where, std::string_view field) {
  size_t bad = find_invalid_utf8(text);
  if (bad == std::string_view::npos) return {};
  return make_error(std::string(where) + "." + std::string(field) + ": invalid UTF-8 at byte " +
                    std::to_string(bad));
}

}  // namespace

Status validate_message(const Message& m, std::string_view where) {
  std::string w(where);
  DSV4_TRY(check_utf8(m.content, w, "content"));
  DSV4_TRY(check_utf8(m.reasoning_content, w, "reasoning_content"));
  DSV4_TRY(check_utf8(m.tool_call_id, w, "tool_call_id"));
  if (m.content_parts) {
    for (size_t k = 0; k < m.content_parts->size(); ++k) {
      const ContentPart& p = (*m.content_parts)[k];
      std::string at = "content[" + std::to_string(k) + "]";
      DSV4_TRY(check_utf8(p.type, w, at + ".type"));
      DSV4_TRY(check_utf8(p.text, w, at + ".text"));
    }
  }
  for (size_t k = 0; k < m.tool_calls.size(); ++k) {
    const ToolCall& c = m.tool_calls[k];
    std::string at = "tool_calls[" + std::to_string(k) + "]";
    if (c.name.empty()) return make_error(w + "." + at + ": tool call without a function name");
    DSV4_TRY(check_utf8(c.name, w, at + ".function.name"));
    DSV4_TRY(check_utf8(c.arguments, w, at + ".function.arguments"));
    DSV4_TRY(check_utf8(c.id, w, at + ".id"));
  }
  if (m.role == Role::developer && m.content.empty()) {
    return make_error(w + ": a developer message needs non-empty content");
  }
  if (!m.tool_calls.empty() && m.role != Role::assistant) {
    return make_error(w + ": only assistant messages can carry tool_calls");
  }
  DSV4_TRY(validate_tools(m.tools, w));
  return {};
}

Result<RenderedPrompt> encode_messages(const std::vector<Message>& messages,
                                       const EncodeOptions& options,
                                       const std::vector<Message>& context) {
  for (size_t i = 0; i < context.size(); ++i) {
    DSV4_TRY(validate_message(context[i], "context[" + std::to_string(i) + "]"));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    DSV4_TRY(validate_message(messages[i], "messages[" + std::to_string(i) + "]"));
  }

  std::vector<Entry> ctx = merge_tool_messages(context);
  std::vector<Entry> msgs = merge_tool_messages(messages);
  std::vector<Entry> full = ctx;
  full.insert(full.end(), msgs.begin(), msgs.end());
  sort_tool_results_by_call_order(full);

  bool thinking = options.thinking == ThinkingMode::thinking;
  bool drop = options.drop_thinking &&
              std::none_of(full.begin(), full.end(), [](const Entry& e) { return has_tools(e.m); });

  size_t n_render = msgs.size();
  if (thinking && drop) {
    std::vector<Entry> ctx_part(full.begin(), full.begin() + static_cast<long>(ctx.size()));
    size_t ctx_kept = drop_thinking_messages(ctx_part).size();
    full = drop_thinking_messages(full);
    n_render = full.size() >= ctx_kept ? full.size() - ctx_kept : 0;
  }
  n_render = std::min(n_render, full.size());

  PromptBuilder out;
  if (options.add_bos && context.empty()) out.add_template(tok::kBos);
  RenderContext rc{full, last_user_index(full), thinking, drop,
                   effort_prefix(options.release, options.effort)};
  for (size_t i = full.size() - n_render; i < full.size(); ++i) render_message(rc, i, out);

  RenderedPrompt prompt = out.take();
  // Backstop for text that bypassed validate_message (e.g. strings inside tool schemas built in
  // C++ rather than parsed): the prompt must be valid UTF-8 before it reaches the tokenizer.
  size_t bad = find_invalid_utf8(prompt.text);
  if (bad != std::string_view::npos) {
    return make_error("rendered prompt has invalid UTF-8 at byte " + std::to_string(bad) +
                      " (check tool schemas and response_format strings)");
  }
  return prompt;
}

}  // namespace dsv4::chat

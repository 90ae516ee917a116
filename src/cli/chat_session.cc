#include "cli/chat_session.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "chat/message_json.h"
#include "cli/chat_file.h"
#include "util/mapped_file.h"
#include "util/sha256.h"

namespace dsv4::cli {
namespace {

chat::Message message(chat::Role role, std::string content) {
  chat::Message m;
  m.role = role;
  m.content = std::move(content);
  return m;
}

nlohmann::json message_json(const chat::Message& m) {
  nlohmann::json j = {{"role", std::string(chat::role_name(m.role))}, {"content", m.content}};
  if (!m.reasoning_content.empty()) j["reasoning_content"] = m.reasoning_content;
  return j;
}

}  // namespace

Status ChatSession::open(int64_t n_ctx) {
  DSV4_ASSIGN_OR_RETURN(session_, model_.engine->new_session(n_ctx));
  return Status();
}

std::vector<chat::Message> ChatSession::with_system(const std::vector<chat::Message>& messages) const {
  std::vector<chat::Message> all;
  if (!settings_.system.empty()) all.push_back(message(chat::Role::system, settings_.system));
  all.insert(all.end(), messages.begin(), messages.end());
  return all;
}

Result<std::vector<int32_t>> ChatSession::render(const std::vector<chat::Message>& messages) const {
  chat::EncodeOptions eo;
  eo.thinking = settings_.thinking;
  eo.effort = settings_.effort;
  return prompt_ids(model_, with_system(messages), eo);
}

Result<TurnReport> ChatSession::turn(const std::string& user_text, const TurnHooks& hooks) {
  std::vector<chat::Message> next = messages_;
  next.push_back(message(chat::Role::user, user_text));
  DSV4_ASSIGN_OR_RETURN(std::vector<int32_t> ids, render(next));
  TurnReport report;
  report.prompt_tokens = static_cast<int64_t>(ids.size());
  if (report.prompt_tokens >= session_->n_ctx()) {
    return make_error("the conversation with this message takes " + std::to_string(ids.size()) +
                      " tokens and the context holds " + std::to_string(session_->n_ctx()) +
                      ": enlarge it with /ctx N or start over with /reset");
  }

  // All but the prompt's last token, a checkpoint, then the last token (§5.3): the next turn
  // re-renders this answer without its reasoning and rolls back to that checkpoint.
  const auto start = std::chrono::steady_clock::now();
  const std::span<const int32_t> all(ids);
  engine::ProgressFn progress;
  if (hooks.progress) {
    progress = [&](int64_t done, int64_t total) {
      report.prefill_stopped = !hooks.progress(done, total);
      return !report.prefill_stopped;
    };
  }
  Result<engine::SyncStats> body = session_->sync(all.first(all.size() - 1), progress);
  if (!body.ok() && report.prefill_stopped) return report;
  if (!body.ok()) return body.error();
  session_->checkpoint();
  DSV4_ASSIGN_OR_RETURN(engine::SyncStats last, session_->sync(all));
  report.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.reused = body->reused;
  report.evaluated = body->evaluated + last.evaluated;

  generation::GenerateOptions go;
  go.sampling = settings_.sampling;
  go.sampling.seed += messages_.size() / 2;  // a new draw each turn, replayable from the seed
  go.max_tokens = settings_.max_tokens;
  go.stream = {settings_.thinking, /*tools_active=*/false};
  go.draft_tokens = settings_.draft_tokens;
  DSV4_ASSIGN_OR_RETURN(report.generation, generator_.generate(*session_, go, hooks.generate));

  messages_ = std::move(next);
  chat::Message answer = message(chat::Role::assistant, report.generation.content);
  answer.reasoning_content = report.generation.reasoning;
  messages_.push_back(std::move(answer));
  return report;
}

Status ChatSession::advance_to_next_turn() {
  std::vector<chat::Message> next = messages_;
  next.push_back(message(chat::Role::user, ""));
  DSV4_ASSIGN_OR_RETURN(std::vector<int32_t> ids, render(next));
  const auto user = std::find(ids.rbegin(), ids.rend(), model_.special.user);
  if (user == ids.rend()) return make_error("the rendered conversation has no user turn");
  ids.resize(static_cast<size_t>(ids.rend() - user));
  if (static_cast<int64_t>(ids.size()) > session_->n_ctx()) return Status();
  return session_->sync(ids).status();
}

Status ChatSession::resize(int64_t n_ctx) {
  if (n_ctx == session_->n_ctx()) return Status();
  if (messages_.empty()) {
    DSV4_ASSIGN_OR_RETURN(session_, model_.engine->new_session(n_ctx));
    return Status();
  }
  // A snapshot carries no rollback checkpoint, so it is taken where the next turn starts.
  DSV4_TRY(advance_to_next_turn());
  if (live_tokens() > n_ctx) {
    return make_error("the conversation takes " + std::to_string(live_tokens()) +
                      " tokens, more than a context of " + std::to_string(n_ctx) + " (/reset first)");
  }
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> resized, model_.engine->new_session(n_ctx));
  DSV4_TRY(resized->restore_snapshot(session_->save_snapshot()));
  session_ = std::move(resized);
  return Status();
}

void ChatSession::reset() {
  // The live state stays: the next turn's sync keeps what the new prompt shares with it (the
  // system prompt) and rolls back the rest.
  messages_.clear();
}

Status ChatSession::save(const std::string& path) {
  DSV4_TRY(advance_to_next_turn());
  ChatFile file;
  nlohmann::json messages = nlohmann::json::array();
  for (const chat::Message& m : messages_) messages.push_back(message_json(m));
  file.document = {
      {"format", "dsv4-chat"},
      {"model", {{"name", model_.engine->config().name}, {"fingerprint", to_hex(model_.engine->fingerprint())}}},
      {"settings",
       {{"thinking", settings_.thinking == chat::ThinkingMode::thinking ? "thinking" : "chat"},
        {"effort", settings_.effort == chat::Effort::max ? "max" : "none"},
        {"system", settings_.system}}},
      {"messages", std::move(messages)},
  };
  file.snapshot = session_->save_snapshot();
  Status s = write_file_atomic(path, encode_chat_file(file));
  if (!s.ok()) return s.error().with_context(path);
  return Status();
}

Status ChatSession::load(const std::string& path) {
  DSV4_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::open(path));
  Result<ChatFile> file = decode_chat_file(mapped.bytes());
  if (!file.ok()) return file.error().with_context(path);
  const nlohmann::json& doc = file->document;
  const std::string fingerprint = to_hex(model_.engine->fingerprint());
  const nlohmann::json* saved_model = doc.contains("model") ? &doc["model"] : nullptr;
  if (saved_model == nullptr || !saved_model->is_object() || saved_model->value("fingerprint", "") != fingerprint) {
    const std::string name = saved_model && saved_model->is_object() ? saved_model->value("name", "?") : "?";
    return make_error(path + ": saved with another model (" + name + "); this chat runs " + model_.path +
                      " (" + model_.engine->config().name + ")");
  }
  const nlohmann::json& settings = doc.value("settings", nlohmann::json::object());
  if (!doc.contains("messages") || !settings.is_object()) return make_error(path + ": chat file damaged (no messages)");
  Result<chat::Json> messages_json = chat::parse_json(doc["messages"].dump());
  if (!messages_json.ok()) return messages_json.error().with_context(path);
  DSV4_ASSIGN_OR_RETURN(std::vector<chat::Message> messages, chat::messages_from_json(*messages_json));

  ChatSettings restored = settings_;
  restored.thinking = settings.value("thinking", "thinking") == "chat" ? chat::ThinkingMode::chat : chat::ThinkingMode::thinking;
  restored.effort = settings.value("effort", "none") == "max" ? chat::Effort::max : chat::Effort::none;
  restored.system = settings.value("system", "");
  // Restore into a fresh session first: a rejected snapshot leaves the current chat as it was.
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> loaded, model_.engine->new_session(session_->n_ctx()));
  Status s = loaded->restore_snapshot(file->snapshot);
  if (!s.ok()) return s.error().with_context(path);
  session_ = std::move(loaded);
  messages_ = std::move(messages);
  settings_ = std::move(restored);
  return Status();
}

}  // namespace dsv4::cli

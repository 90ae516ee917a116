#include "chat/message.h"

#include <array>
#include <utility>

namespace dsv4::chat {
namespace {

constexpr std::array<std::pair<Role, std::string_view>, 6> kRoles = {{
    {Role::system, "system"},
    {Role::user, "user"},
    {Role::assistant, "assistant"},
    {Role::tool, "tool"},
    {Role::developer, "developer"},
    {Role::latest_reminder, "latest_reminder"},
}};

constexpr std::array<std::pair<Task, std::string_view>, 7> kTasks = {{
    {Task::none, ""},
    {Task::action, "action"},
    {Task::query, "query"},
    {Task::authority, "authority"},
    {Task::domain, "domain"},
    {Task::title, "title"},
    {Task::read_url, "read_url"},
}};

}  // namespace

std::string_view role_name(Role role) {
  for (const auto& [r, n] : kRoles) {
    if (r == role) return n;
  }
  return "?";
}

std::optional<Role> parse_role(std::string_view name) {
  for (const auto& [r, n] : kRoles) {
    if (n == name) return r;
  }
  return std::nullopt;
}

std::string_view task_name(Task task) {
  for (const auto& [t, n] : kTasks) {
    if (t == task) return n;
  }
  return "?";
}

std::optional<Task> parse_task(std::string_view name) {
  if (name.empty()) return std::nullopt;
  for (const auto& [t, n] : kTasks) {
    if (n == name) return t;
  }
  return std::nullopt;
}

}  // namespace dsv4::chat

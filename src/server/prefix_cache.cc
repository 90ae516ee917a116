#include "server/prefix_cache.h"

#include <algorithm>
#include <map>
#include <optional>

#include "chat/typed_text.h"
#include "util/log.h"

namespace dsv4::server {
namespace {

constexpr size_t kMaxCheckpointRecords = 8;  // what the engine keeps at most

size_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  return static_cast<size_t>(std::mismatch(a.begin(), a.begin() + static_cast<ptrdiff_t>(n), b.begin()).first -
                             a.begin());
}

// What happens when the session reaches a position during prefill.
struct Stage {
  bool checkpoint = false;
  std::optional<StoreReason> store;
};

}  // namespace

const char* rung_name(Rung rung) {
  switch (rung) {
    case Rung::kLiveTokens: return "live-tokens";
    case Rung::kLiveText: return "live-text";
    case Rung::kCheckpoint: return "checkpoint";
    case Rung::kDisk: return "disk";
    case Rung::kCold: return "cold";
  }
  return "cold";
}

PrefixCache::PrefixCache(std::unique_ptr<engine::Session> session, const tokenizer::Tokenizer& tokenizer,
                         const tokenizer::SpecialTokens& special, KvStore* store, StoreTriggerOptions triggers)
    : session_(std::move(session)), tokenizer_(tokenizer), special_(special), store_(store), triggers_(triggers) {}

Result<PrefixCache::Plan> PrefixCache::plan_from_live(std::span<const int32_t> prompt,
                                                      std::string_view prompt_typed) const {
  const std::vector<int32_t>& live = session_->tokens();
  Plan plan;
  plan.tokens.assign(prompt.begin(), prompt.end());
  if (!live.empty() && common_prefix(live, prompt) == live.size()) {
    plan.keep = plan.reuse = static_cast<int64_t>(live.size());
    plan.rung = Rung::kLiveTokens;
    return plan;
  }

  // How far the live typed text agrees with the prompt's, in whole live tokens.
  size_t p = 0, offset = 0;
  for (; p < live.size(); ++p) {
    const std::string piece = chat::typed_text(std::span<const int32_t>(&live[p], 1), tokenizer_);
    if (prompt_typed.compare(offset, piece.size(), piece) != 0) break;
    offset += piece.size();
  }
  int64_t reuse = static_cast<int64_t>(p);
  if (p < live.size()) {
    reuse = 0;
    for (int64_t c : checkpoints_) {
      if (c <= static_cast<int64_t>(p)) reuse = c;
    }
  }
  if (reuse == 0) return plan;  // cold: the canonical tokens, nothing to keep

  Result<std::vector<int32_t>> rest = chat::tokens_from_typed_text(prompt_typed.substr(offset), tokenizer_);
  if (!rest.ok()) {
    log::warn("kv reuse: cannot tokenise the prompt's remaining typed text (", rest.error().message,
              "); evaluating the canonical prompt");
    return plan;
  }
  plan.tokens.assign(live.begin(), live.begin() + static_cast<ptrdiff_t>(p));
  plan.tokens.insert(plan.tokens.end(), rest->begin(), rest->end());
  plan.keep = static_cast<int64_t>(p);
  plan.reuse = reuse;
  plan.rung = p == live.size() ? Rung::kLiveText : Rung::kCheckpoint;
  return plan;
}

bool PrefixCache::continues_live(const Plan& plan) const {
  return last_prompt_len_ > 0 && plan.reuse >= last_prompt_len_ - 1;
}

int64_t PrefixCache::evict_position() const {
  const int64_t n = static_cast<int64_t>(session_->tokens().size());
  const int64_t before_prefix = last_prompt_len_ - 1;
  // The next prompt of that conversation drops the reasoning generated after this position.
  if (last_reasoning_dropped_ && before_prefix > 0 && before_prefix < n &&
      std::find(checkpoints_.begin(), checkpoints_.end(), before_prefix) != checkpoints_.end()) {
    return before_prefix;
  }
  return n;
}

Result<engine::SyncStats> PrefixCache::sync_to(std::span<const int32_t> prefix, const engine::ProgressFn& progress) {
  const size_t common = common_prefix(session_->tokens(), prefix);
  if (common < session_->tokens().size()) {
    std::erase_if(checkpoints_, [&](int64_t c) { return c > static_cast<int64_t>(common); });
    if (last_stored_len_ > static_cast<int64_t>(common)) last_stored_len_ = 0;
  }
  return session_->sync(prefix, progress);
}

void PrefixCache::record_checkpoint() {
  session_->checkpoint();
  const int64_t n = static_cast<int64_t>(session_->tokens().size());
  if (!checkpoints_.empty() && checkpoints_.back() == n) return;
  checkpoints_.push_back(n);
  if (checkpoints_.size() > kMaxCheckpointRecords) checkpoints_.erase(checkpoints_.begin());
}

bool PrefixCache::store_now(StoreReason reason) {
  const std::vector<int32_t>& tokens = session_->tokens();
  const std::string key = chat::typed_text(tokens, tokenizer_);
  const std::vector<uint8_t> snapshot = session_->save_snapshot();
  Result<bool> stored = store_->store(key, tokens, reason, session_->n_ctx(), snapshot);
  for (const std::string& w : store_->warnings()) log::warn("kv cache: ", w);
  if (!stored.ok()) {
    log::warn("kv cache: storing ", tokens.size(), " tokens failed: ", stored.error().message);
    return false;
  }
  if (*stored) {
    last_stored_len_ = static_cast<int64_t>(tokens.size());
    log::info("kv cache: stored ", tokens.size(), " tokens (", static_cast<uint32_t>(reason), " ",
              reason == StoreReason::kCold        ? "cold"
              : reason == StoreReason::kContinued ? "continued"
              : reason == StoreReason::kEvict     ? "evict"
              : reason == StoreReason::kShutdown  ? "shutdown"
                                                  : "manual",
              "), ", snapshot.size(), " snapshot bytes");
  }
  return *stored;
}

Result<bool> PrefixCache::try_disk(std::string_view prompt_typed, Plan& plan, int64_t& stores) {
  // Evict: the live conversation is about to be replaced; keep it for its return.
  const int64_t live_n = static_cast<int64_t>(session_->tokens().size());
  if (live_n >= triggers_.min_tokens && last_stored_len_ < live_n) {
    const int64_t q = evict_position();
    if (q >= triggers_.min_tokens && q > last_stored_len_) {
      if (q < live_n) {
        const std::vector<int32_t> prefix(session_->tokens().begin(), session_->tokens().begin() + q);
        DSV4_TRY(sync_to(prefix, nullptr).status());
      }
      if (store_now(StoreReason::kEvict)) ++stores;
    }
  }

  Result<std::optional<KvHit>> hit = store_->lookup(prompt_typed, session_->n_ctx());
  for (const std::string& w : store_->warnings()) log::warn("kv cache: ", w);
  if (!hit.ok()) {
    log::warn("kv cache: lookup failed: ", hit.error().message);
    return false;
  }
  if (!hit->has_value()) return false;
  KvHit& h = **hit;
  if (static_cast<int64_t>(h.tokens.size()) <= plan.reuse) return false;
  if (Status s = session_->restore_snapshot(h.snapshot); !s.ok()) {
    log::warn("kv cache: ", h.file, " not loaded: ", s.message());
    return false;
  }
  checkpoints_.assign(1, static_cast<int64_t>(h.tokens.size()));  // restore leaves one checkpoint
  last_stored_len_ = static_cast<int64_t>(h.tokens.size());
  Result<std::vector<int32_t>> rest = chat::tokens_from_typed_text(prompt_typed.substr(h.key.size()), tokenizer_);
  if (!rest.ok()) {
    log::warn("kv cache: cannot tokenise the prompt after the stored prefix (", rest.error().message, ")");
    return false;  // the plan's canonical tokens still share what they can with the restored state
  }
  plan.tokens = h.tokens;
  plan.tokens.insert(plan.tokens.end(), rest->begin(), rest->end());
  plan.keep = plan.reuse = static_cast<int64_t>(h.tokens.size());
  plan.rung = Rung::kDisk;
  log::info("kv cache: disk hit ", h.file, " (", h.tokens.size(), " tokens)");
  return true;
}

Result<PrefillResult> PrefixCache::prefill(std::span<const int32_t> prompt_tokens, std::string_view prompt_typed,
                                           const engine::ProgressFn& progress) {
  if (prompt_tokens.empty()) return make_error("empty prompt");
  DSV4_ASSIGN_OR_RETURN(Plan plan, plan_from_live(prompt_tokens, prompt_typed));
  PrefillResult out;
  const bool miss = !continues_live(plan);
  bool disk_hit = false;
  if (miss && store_) {
    DSV4_ASSIGN_OR_RETURN(disk_hit, try_disk(prompt_typed, plan, out.disk_stores));
    // An evict store may have rolled the session back: plan again from what it holds now.
    if (!disk_hit) {
      DSV4_ASSIGN_OR_RETURN(plan, plan_from_live(prompt_tokens, prompt_typed));
    }
  }
  const int64_t n = static_cast<int64_t>(plan.tokens.size());
  if (n > session_->n_ctx()) {
    return make_error("prompt of " + std::to_string(n) + " tokens exceeds the context of " +
                      std::to_string(session_->n_ctx()));
  }

  // Positions past the shared prefix where the prefill pauses: checkpoints (chat anchor, before
  // the last token) and disk stores (cold, continued frontiers).
  std::map<int64_t, Stage> stages;
  const auto add = [&](int64_t pos, bool checkpoint, std::optional<StoreReason> store) {
    if (pos <= plan.keep || pos > n) return;
    Stage& s = stages[pos];
    s.checkpoint = s.checkpoint || checkpoint;
    if (store && !s.store) s.store = store;
  };
  // The stable prefix before the task's user message, worth a checkpoint when it is long enough to
  // be worth storing.
  const int64_t anchor = chat_anchor(plan.tokens, special_.user, special_.assistant);
  if (anchor >= triggers_.min_tokens) add(anchor, true, std::nullopt);
  if (n > 1) add(n - 1, true, std::nullopt);
  add(n, true, std::nullopt);
  if (store_) {
    if (miss && !disk_hit) {
      const int64_t cold = cold_store_length(plan.tokens, special_.user, special_.assistant, triggers_);
      if (cold > 0) add(cold, false, StoreReason::kCold);
    }
    const int64_t interval = continued_interval(triggers_);
    if (triggers_.continued_interval_tokens > 0) {
      for (int64_t f = (plan.keep / interval + 1) * interval; f <= n; f += interval) {
        if (is_continued_frontier(f, last_stored_len_, triggers_)) add(f, false, StoreReason::kContinued);
      }
    }
  }

  const int64_t total = std::max<int64_t>(n - plan.reuse, 1);
  int64_t evaluated = 0;
  for (const auto& [pos, stage] : stages) {
    engine::ProgressFn stage_progress;
    if (progress) {
      stage_progress = [&, base = evaluated](int64_t done, int64_t) {
        return progress(base + done, std::max(total, base + done));
      };
    }
    DSV4_ASSIGN_OR_RETURN(engine::SyncStats st,
                          sync_to(std::span<const int32_t>(plan.tokens).first(static_cast<size_t>(pos)),
                                  stage_progress));
    evaluated += st.evaluated;
    if (stage.checkpoint) record_checkpoint();
    if (stage.store && store_now(*stage.store)) ++out.disk_stores;
  }
  // The whole prompt was shared (nothing staged): make sure the session holds exactly it.
  if (static_cast<int64_t>(session_->tokens().size()) != n) {
    DSV4_ASSIGN_OR_RETURN(engine::SyncStats st, sync_to(plan.tokens, progress));
    evaluated += st.evaluated;
    record_checkpoint();
  }

  last_prompt_len_ = n;
  out.rung = disk_hit ? Rung::kDisk : plan.rung;
  if (evaluated >= n && out.rung != Rung::kDisk) out.rung = Rung::kCold;
  out.evaluated = evaluated;
  out.cached = n - evaluated;
  out.tokens = std::move(plan.tokens);
  return out;
}

void PrefixCache::finished_turn(bool reasoning_dropped) { last_reasoning_dropped_ = reasoning_dropped; }

bool PrefixCache::at_decode_step(bool inside_tool_call) {
  if (!store_ || inside_tool_call) return false;
  const int64_t n = static_cast<int64_t>(session_->tokens().size());
  if (!is_continued_frontier(n, last_stored_len_, triggers_)) return false;
  return store_now(StoreReason::kContinued);
}

void PrefixCache::store_at_shutdown() {
  if (!store_) return;
  const int64_t n = static_cast<int64_t>(session_->tokens().size());
  if (n < triggers_.min_tokens || last_stored_len_ >= n) return;
  const int64_t q = evict_position();
  if (q < triggers_.min_tokens) return;
  if (q < n) {
    const std::vector<int32_t> prefix(session_->tokens().begin(), session_->tokens().begin() + q);
    if (Result<engine::SyncStats> s = sync_to(prefix, nullptr); !s.ok()) {
      log::warn("kv cache: shutdown store skipped: ", s.error().message);
      return;
    }
  }
  store_now(StoreReason::kShutdown);
}

}  // namespace dsv4::server

#include "cpu/mtp.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/blocks.h"
#include "cpu/linear.h"
#include "cpu/ops.h"

namespace dsv4::cpu {
namespace {

// Pairs evaluated at once: as forward.cc's chunks, a bound on scratch memory (results do not
// depend on it).
constexpr int64_t kMaxChunk = 64;

Status validate(const model::MtpModel& mtp, const State& state, int64_t window_start, std::span<const float> hidden,
                std::span<const int32_t> next_tokens, const SimOptions& sim) {
  const model::Config& c = mtp.block.config;
  if (state.n_layer() != 1 || state.layer(0).ratio != 0 || state.head_dim() != c.head_dim ||
      state.window() != c.window || state.n_vocab() != c.n_vocab) {
    return make_error("cpu mtp: state was not created for the MTP block's configuration");
  }
  if (state.mode() && !(*state.mode() == sim)) {
    return make_error("cpu mtp: the state was built in another simulation mode (official/plain)");
  }
  if (window_start < 0 || window_start > state.n()) {
    return make_error("cpu mtp: window start " + std::to_string(window_start) + " outside [0, " +
                      std::to_string(state.n()) + "]");
  }
  const int64_t len = static_cast<int64_t>(next_tokens.size());
  if (static_cast<int64_t>(hidden.size()) != len * c.hc_dim()) {
    return make_error("cpu mtp: " + std::to_string(hidden.size()) + " hidden values for " + std::to_string(len) +
                      " pairs of " + std::to_string(c.hc_dim()));
  }
  if (state.n() + len > state.max_ctx()) {
    return make_error("cpu mtp: " + std::to_string(state.n() + len) + " indices exceed the state's capacity of " +
                      std::to_string(state.max_ctx()));
  }
  for (int32_t tok : next_tokens) {
    if (tok < 0 || tok >= c.n_vocab) {
      return make_error("cpu mtp: token id " + std::to_string(tok) + " outside the vocabulary of " +
                        std::to_string(c.n_vocab));
    }
  }
  return Status();
}

// §10.1's input: X[t][h] = e_proj·RMSNorm_enorm(Embed[tokens[t]]) + h_proj·RMSNorm_hnorm(H[t][h]).
std::vector<float> combined_input(const model::MtpModel& mtp, const Chunk& ch, const float* H) {
  const model::Config& c = mtp.block.config;
  const int64_t T = ch.n_tok, D = c.n_embd, n = c.n_hc, HD = c.hc_dim();
  const std::vector<float> enorm = mtp.enorm.to_f32(), hnorm = mtp.hnorm.to_f32();
  std::vector<float> e(static_cast<size_t>(T * D)), e_proj(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    float* et = e.data() + t * D;
    dequantize_tensor_row(mtp.block.weights.token_embd, ch.tokens[static_cast<size_t>(t)], et);
    rms_norm(et, enorm.data(), D, c.rms_eps, et);
  }
  project(mtp.e_proj, e.data(), D, T, e_proj.data(), D);
  // The streams are independent rows of the same two matrices (hnorm per stream, §6).
  std::vector<float> h(static_cast<size_t>(T * HD)), X(static_cast<size_t>(T * HD));
  for (int64_t r = 0; r < T * n; ++r) rms_norm(H + r * D, hnorm.data(), D, c.rms_eps, h.data() + r * D);
  project(mtp.h_proj, h.data(), D, T * n, X.data(), D);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t s = 0; s < n; ++s) {
      float* x = X.data() + (t * n + s) * D;
      const float* ep = e_proj.data() + t * D;
      for (int64_t i = 0; i < D; ++i) x[i] = ep[i] + x[i];
    }
  }
  return X;
}

}  // namespace

Status mtp_forward(const model::MtpModel& mtp, State& state, int64_t window_start, std::span<const float> hidden,
                   std::span<const int32_t> next_tokens, const SimOptions& sim, float* logits, const DumpFn& dump) {
  DSV4_TRY(validate(mtp, state, window_start, hidden, next_tokens, sim));
  if (next_tokens.empty()) return Status();
  if (!state.mode()) state.set_mode(sim);
  const model::Config& c = mtp.block.config;
  const int64_t len = static_cast<int64_t>(next_tokens.size());
  for (int64_t off = 0; off < len; off += kMaxChunk) {
    Chunk ch;
    ch.pos0 = state.n();
    ch.n_tok = std::min(kMaxChunk, len - off);
    ch.window_start = window_start;
    ch.tokens = next_tokens.subspan(static_cast<size_t>(off), static_cast<size_t>(ch.n_tok));
    ch.sim = sim;
    ch.dump = &dump;
    std::vector<float> X = combined_input(mtp, ch, hidden.data() + off * c.hc_dim());
    ch.dump_rows("mtp_input", X.data(), c.hc_dim(), c.hc_dim());
    forward_streams(mtp.block, state, ch, X, logits ? logits + off * c.n_vocab : nullptr);
    state.set_n(state.n() + ch.n_tok);
  }
  return Status();
}

}  // namespace dsv4::cpu

// The CPU reference forward pass of DeepSeek V4 Flash (MODEL.md §3-§9, §11, §12): plain f32 math
// that mirrors the specification section by section, threaded with the default pool.
//
// Prefill of a chunk is semantically identical to decoding its tokens one at a time (each token
// has its own window, its own visible compressed rows and its own indexer top-k), and it is
// bit-identical too: every per-token quantity is computed with the same operations in the same
// order whatever the chunking, batching or thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "cpu/sim.h"
#include "cpu/state.h"
#include "model/weights.h"
#include "util/status.h"

namespace dsv4::cpu {

// Receives named intermediate tensors (DESIGN.md §5), e.g. "blk.3.attn_out", with the absolute
// position of the token they belong to. Names: token_embd; per layer blk.N.{attn_norm,
// q_lora_norm, q, kv, comp_row, index_row, attn_heads, attn_low, attn_out, hc_attn, ffn_norm,
// ffn_route_w (the k routing weights), ffn_moe, ffn_shexp, ffn_out, hc_ffn}; output_norm, logits
// (only for the tokens whose logits are computed). comp_row/index_row are reported for the token
// that completes the window. The span is only valid during the call.
using DumpFn = std::function<void(std::string_view name, int64_t pos, std::span<const float>)>;

// Evaluates `tokens` at positions state.n() .. state.n()+tokens.size()-1 and advances the state.
// logits, when not null, receives [tokens.size()][n_vocab] next-token logits; the state always
// keeps those of the last position. Inputs are validated before anything changes (token ids,
// context capacity, the state's shape and its recorded mode), so an error leaves the state as it
// was. hidden, when not null, receives [tokens.size()][n_hc·n_embd]: every token's final
// hyper-connection state X before the head's collapse (the MTP block's input, MODEL.md §10).
// Uses the process-wide thread pool: do not run two forwards concurrently.
Status forward(const model::Model& model, State& state, std::span<const int32_t> tokens,
               const SimOptions& sim, float* logits, const DumpFn& dump = nullptr, float* hidden = nullptr);

}  // namespace dsv4::cpu

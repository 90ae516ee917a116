// MODEL.md §10: the MTP block on the CPU. Index i pairs the main model's final hyper-connection
// state H_i (cpu::forward's `hidden`) with the token t_{i+1} that followed position i; the block
// runs that pair as its own sequence position i (its raw window, its RoPE) and its logits guess
// t_{i+2} (§10.2, the official pairing):
//
//   e = Embed[t_{i+1}];  E' = e_proj · RMSNorm_enorm(e)
//   X[h] = E' + h_proj · RMSNorm_hnorm(H_i[h])            every stream h
//   logits = the block's layer and its own head over X     (cpu::forward_streams, one layer)
#pragma once

#include <cstdint>
#include <span>

#include "cpu/forward.h"
#include "cpu/sim.h"
#include "cpu/state.h"
#include "model/weights.h"
#include "util/status.h"

namespace dsv4::cpu {

// Evaluates the pairs (hidden[j], next_tokens[j]) at indices state.n() .. state.n()+size-1 and
// advances `state`, the block's own (State::create(mtp.block.config, ...)). hidden holds
// [size][n_hc·n_embd]. window_start: the first index whose row the block's window holds (0, or
// where the block began on a sequence whose earlier pairs it never saw), at most state.n().
// logits, when not null, receives [size][n_vocab]; the state keeps the last index's. Validated
// first: on error the state is unchanged. Dumps "mtp_input" (the combined streams X) per index.
Status mtp_forward(const model::MtpModel& mtp, State& state, int64_t window_start, std::span<const float> hidden,
                   std::span<const int32_t> next_tokens, const SimOptions& sim, float* logits,
                   const DumpFn& dump = nullptr);

}  // namespace dsv4::cpu

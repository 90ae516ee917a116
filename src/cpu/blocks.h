// The sub-layers of forward.cc, one file per MODEL.md section: attention (§7, attention.cc with
// compressor.cc and indexer.cc) and the MoE FFN (§8, moe.cc). They work on a chunk of consecutive
// tokens of one sequence; rows are token-major ([n_tok][width]).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cpu/forward.h"
#include "cpu/rope.h"
#include "cpu/state.h"
#include "model/weights.h"

namespace dsv4::cpu {

// What every sub-layer needs to know about the chunk being evaluated.
struct Chunk {
  int64_t pos0 = 0;  // position of the first token
  int64_t n_tok = 0;
  // Positions before it have no raw rows (the MTP block's window restarts where its state had no
  // predecessor, mtp.h): the raw window of position p is max(window_start, p - W + 1) .. p.
  int64_t window_start = 0;
  std::span<const int32_t> tokens;  // the chunk's input token ids
  SimOptions sim;
  const DumpFn* dump = nullptr;  // null or empty: no dumps

  bool dumping() const { return dump && *dump; }
  // Reports rows [t·stride, t·stride + width) of `data` as "name" for every token t of the chunk.
  void dump_rows(const std::string& name, const float* data, int64_t stride, int64_t width) const {
    if (!dumping()) return;
    for (int64_t t = 0; t < n_tok; ++t) {
      (*dump)(name, pos0 + t,
              std::span<const float>(data + t * stride, static_cast<size_t>(width)));
    }
  }
};

inline std::string blk_name(int64_t layer, const char* what) {
  return "blk." + std::to_string(layer) + "." + what;
}

// §5-§9 from the chunk's input streams X [n_tok][n_hc·n_embd] (§4's embeddings, or the MTP
// block's combined input): every layer, then the head's logits (every token's into `logits` when
// not null, the last token's into the state either way). X ends as the final streams.
void forward_streams(const model::Model& model, State& state, const Chunk& chunk, std::vector<float>& X,
                     float* logits);

// §7: the attention sub-layer of layer l. x = attn_norm output [n_tok][n_embd];
// y = the 4096-wide output handed to hc_post [n_tok][n_embd]. Appends to / updates the layer's
// state (raw ring, compressors, rows) exactly as decoding the tokens one by one would.
void attention(const model::Model& model, int64_t layer, State& state, const Chunk& chunk,
               const float* x, float* y);

// §7.6: runs one compressor over the chunk, appending the rows it emits. kind selects the
// emission's simulation: the attention compressor FP8-simulates the nope dims, the indexer
// compressor applies Hadamard + FP4 to the whole row.
enum class CompressorKind { kAttention, kIndexer };
void compress(const model::Model& model, int64_t layer, State& state, const Chunk& chunk,
              CompressorKind kind, const std::vector<float>& omega, const float* x);

// §7.7: for every token of the chunk, the main compressed rows its attention sees on a ratio-4
// layer (ascending indices): all c < floor((p+1)/4) while they are at most top_k, else the
// indexer's top-k. Needs this chunk's indexer rows already appended. qr = q_a_norm output
// [n_tok][q_lora_rank], x = attention input [n_tok][n_embd].
std::vector<std::vector<int32_t>> indexer_select(const model::Model& model, int64_t layer,
                                                 const State& state, const Chunk& chunk,
                                                 const std::vector<float>& omega, const float* qr,
                                                 const float* x);

// §8: routed experts + shared expert of layer l for z = ffn_norm output; f = their sum.
// Expert ids of hash layers must have been validated (forward does it before any work).
void moe(const model::Model& model, int64_t layer, const Chunk& chunk, const float* z, float* f);

}  // namespace dsv4::cpu

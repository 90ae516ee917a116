// Prefill matrix products on tensor cores: Y[n][m] = X[n][k] · W[m][k]ᵀ for weights in the GGUF
// block layouts of FORMATS.md §4 (F32, F16, BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS), f16 activations and
// f32 outputs, and the grouped form for MoE prefill (tokens sorted by expert, one launch for all
// experts). Decode (one token) uses matvec.h instead.
//
// Weights stay exactly as in the file: `n_out` rows (output features) of row_bytes(type, n_in)
// bytes, blocks along the row; an expert tensor ne = (n_in, n_out, n_expert) is n_expert such
// matrices one after the other. The kernel copies raw blocks into shared memory, decodes them there
// to f16 (cuda/gemm_decode.cuh) and multiplies on the tensor cores with f32 accumulation.
//
// Activations are f16, optionally with one f32 factor per row (x_scale): a caller holding f32
// converts each activation row once (convert_f32_to_f16, which scales each row by a power of two so
// that its largest magnitude lies in [2^14, 2^15): no overflow and no subnormals for any row of
// finite values) instead of once per output tile; the GEMM multiplies each output row by its factor.
//
// Two modes. Split mode (x_lo given; the default of the forward pass): x is the pair x_hi + x_lo of
// convert_f32_to_f16_split (x to ≈ 2^-22 relative to its row's largest element), each weight is
// (block scale) × (an integer code exact in f16) [− dmin·m for Q2_K/Q4_K] (cuda/gemm_codes.cuh):
// the tensor cores multiply codes by x_hi and x_lo exactly (two MMAs per k16 step), each 32-column
// block's sum is scaled in f32, the offsets are subtracted times Σ x over their group (an MMA against
// ones). Against the exact Σ x·w over the real-valued weights the error is f32-level:
// ≤ 2^-22·Σ|x·w| + 2^-25·Σ|w|·(row factor) (the pair's rounding) plus f32 accumulation error, plus
// 2^-24 per scale and offset product (tests/cuda/gemm_split_test.cc states the bound). Types: F16,
// Q8_0, Q2_K, Q4_K, IQ2_XXS (gemm_split_supports); it meets the whole-model bar of
// tests/cuda/forward_test.cc. ≈ 1.4× the f16 mode's time (docs/PERF.md, session 5). A third mode,
// grouped_gemm's int8 mode (GroupedGemm::x_limbs, Q2_K weights), multiplies int8 codes by
// fixed-point activation limbs on int8 tensor cores (cuda/gemm_int8.cu). F16 mode
// (x_lo null), as follows:
//
// Accuracy: every product x·w is formed from f16(x) and f16(w) and summed in f32, so against the
// exact sum over the dequantised weights the error is at most (2^-11 + 2^-11)·Σ|x·w| (the two f16
// roundings; w's is zero for F16 weights, x's zero when x is given in f16) plus f32 accumulation
// error, plus 2^-25·Σ|x| for weights below f16's normal range (tests/cuda/gemm_test.cc states the
// bound). f16 and not bf16 (the same mma shape and rate): 2^-11 instead of 2^-9 per product. Even
// so a whole-model prefill through these GEMMs misses the bar of tests/cuda/forward_test.cc
// (near-tied top-k choices flip; docs/PERF.md), which is why it is opt-in (cuda/session.h). Overflow: converted
// activations cannot overflow (the row scaling); a weight beyond ±65504 saturates to ±65504.
// Results are deterministic: each output is one fixed sequence of operations, no atomics, and it
// does not depend on the other rows of its group or on the number of groups.
//
// All pointers are device pointers. Nothing here synchronises, allocates or reads device data on
// the host, so every call can be captured into a CUDA graph (IQ2_XXS: call prepare_matvec() once
// before the first capture; it uploads the lookup tables). Argument errors come back as a Status
// before anything is launched, launch errors as a Status after.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "gguf/types.h"
#include "util/status.h"

namespace dsv4::cuda {

using gguf::TensorType;

// A weight tensor on the device: n_expert matrices of n_out rows × n_in columns (one for dense).
// n_in must be a multiple of 256 for Q2_K, Q4_K and IQ2_XXS and of 64 for the other formats;
// w must be 16-byte aligned (cudaMalloc and GGUF's 32-byte tensor alignment are).
struct GemmWeights {
  TensorType type = TensorType::F32;
  const void* w = nullptr;
  int64_t n_in = 0;      // k
  int64_t n_out = 0;     // m
  int64_t n_expert = 1;  // matrix e starts at w + e·n_out·row_bytes(type, n_in)
};

// Tile shape of the kernel (gemm_kernel.cuh names them). kAuto picks kLarge when it gives at least
// one CTA per SM and the row groups average at least 128 rows, else kSmall.
enum class GemmTile {
  kAuto,
  kLarge,  // 128 tokens × 256 features per CTA (warp tile 64 × 64); not for F32 weights
  kSmall,  // 64 tokens × 128 features per CTA (warp tile 32 × 32)
  // Split mode, Hopper: wgmma (128 tokens × 128 features per CTA; cuda/gemm_wgmma.cu), the
  // split's numbers and bound. Q8_0 weights in gemm() and grouped_gemm(), F16 weights in gemm(),
  // IQ2_XXS weights in grouped_gemm(). kAuto picks it there on compute capability 9 from 512 rows
  // on (grouped: from an average of 68 rows per group, below which kWgmmaNarrowPair; from it
  // kWgmmaTails).
  kWgmma,
  // 64 tokens × 256 features per CTA (each expert's weights decoded once per 64 tokens; less
  // padding where groups are small or uneven), grouped_gemm() only: Q8_0 on the same kernel, with
  // the same bits; IQ2_XXS on cuda/gemm_wgmma_regs.cu (W decoded into the MMAs' registers), the
  // split's bound with bits of its own.
  kWgmma64,
  // grouped_gemm() only: kWgmma for every group's full tiles and for tails of more than 64 rows,
  // then kWgmma64 for tails of 1..64 rows (two launches); each row has the bits of its tile. kAuto
  // takes it where it would take kWgmma for a grouped call.
  kWgmmaTails,
  // grouped_gemm() only: 16 tokens × 256 features per CTA (cuda/gemm_wgmma_narrow.cuh), for groups
  // of few rows: x_hi and x_lo one n32 operand, so each weight is read by the tensor cores once;
  // the split's bound, other bits than the other tiles. kAuto takes it for grouped calls averaging
  // under kWgmmaNarrowPairFrom rows per group, at any row count.
  kWgmmaNarrow,
  // grouped_gemm() only: kWgmmaNarrow for the groups of 1..16 rows (one CTA row each), kWgmma64
  // for the larger ones (two launches); each group has the bits of its tile. A group of 16 rows or
  // fewer costs one 16-token CTA, ≈ 0.7 of a 64-token one, one of 17..64 rows two to four of them
  // or one 64-token CTA. kAuto takes it for grouped calls averaging from kWgmmaNarrowPairFrom to
  // under kWgmmaNarrowBelow rows per group at any row count, and from 512 rows below kWgmma64Below
  // (where it took kWgmma64 alone). Below kWgmmaNarrowPairFrom few groups pass 16 rows, and their
  // 64-token launch is a partial wave that costs more than the 16-token CTAs it saves
  // (docs/PERF.md, session 24).
  kWgmmaNarrowPair,
};
inline constexpr int64_t kWgmmaNarrowPairFrom = 8, kWgmmaNarrowBelow = 16;

// Below this average of rows per group kAuto takes the 64-token wgmma tile (paired with the
// 16-token one: kWgmmaNarrowPair), from it on the 128-token one (paired with the 64-token one for
// short tails: kWgmmaTails). docs/PERF.md, session 10, "a 64-token wgmma tile": measured on an
// H100, a 64-token CTA costs ×1.165 a 128-token one, so with binomial group sizes (uniform
// routing) the tiles break even near 69 rows per group (48: the 64-token tile ×0.60 the time, 72
// and 96: ×1.06 and ×1.16). Session 25 (H200, IQ2_XXS's 64-token tile on gemm_wgmma_regs.cu, a
// CTA ≈ ×1.05 a 128-token one): 48 rows ×0.60 the 128-token tile's time, 72 and 96 rows ×1.10
// and ×1.11 the tails pair's, so the rule stands.
inline constexpr int64_t kWgmma64Below = 68;

// Whether gemm()/grouped_gemm() take weights of this type and row length (n_in), in f16 mode and in
// split mode; gemm_int8_supports: grouped_gemm's int8 mode (below).
bool gemm_supports(TensorType type, int64_t n_in);
bool gemm_split_supports(TensorType type, int64_t n_in);
bool gemm_int8_supports(TensorType type, int64_t n_in);

// Y rows: y + r·y_stride for r < n; X rows: x + r·x_stride, times x_scale[r] when x_scale is not
// null. x must be 16-byte aligned and x_stride a multiple of 8 (f16 elements), y_stride ≥ n_out.
// Only w.n_expert == 1 is accepted. x_lo (split mode): the low parts of X, same layout as x.
// Split mode's tiles are 64 tokens × 256 (kLarge) or × 128 (kSmall) features.
// split_k: scratch for the partial products of column slices, for split-mode calls whose mma.sync
// tiles would leave SMs idle (a short chunk's projections: 2 row tiles of 64 at 128 tokens).
// gemm() then splits the columns into up to kMaxKSplits slices of a multiple of 256 that fit the
// scratch, runs them as one launch and adds the slices in order (a second launch): other bits than
// one pass, the same bound (each slice's products and sums are the one pass's, over fewer blocks).
// Without scratch, in f16 mode, where the tiles fill the SMs or a wgmma tile runs: one pass.
struct GemmSplitK {
  float* partials = nullptr;
  size_t bytes = 0;
};
inline constexpr int kMaxKSplits = 16;
// The column slices gemm() takes for these arguments (1: one pass).
Result<int> gemm_k_splits(const GemmWeights& w, int64_t x_stride, int64_t n, GemmTile tile, bool split,
                          GemmSplitK split_k);
Status gemm(const GemmWeights& w, const __half* x, int64_t x_stride, const float* x_scale, int64_t n, float* y,
            int64_t y_stride, cudaStream_t stream, GemmTile tile = GemmTile::kAuto, const __half* x_lo = nullptr,
            GemmSplitK split_k = {});

// MoE prefill: the rows of a "sorted" activation matrix are split into n_groups consecutive row
// ranges, group g = rows [offsets[g], offsets[g+1]), each multiplied by one expert's matrix:
//   Y[dst(r)] = x_scale[src(r)] · X[src(r)] · W_{expert(g)}ᵀ   for r in group g,
// with src(r) = x_rows[r] (a gather: the X rows stay in token order) or r when x_rows is null,
// dst(r) = y_rows[r] (a scatter, e.g. back to (token, slot) order) or r when y_rows is null, the
// factor 1 when x_scale is null, and expert(g) = group_expert[g], or g when group_expert is null.
// One launch covers all groups; its grid is sized from n_rows and n_groups alone (no host read of
// the offsets).
//
// offsets, group_expert, x_rows and y_rows are device data and are not trusted: offsets are
// clamped to [0, n_rows] and a decreasing pair is an empty group; a group whose expert id is
// outside [0, n_expert) writes nothing; x_rows entries are clamped to [0, x_count), y_rows entries
// to [0, y_count) (two rows sent to one output row race; the caller keeps y_rows a permutation).
struct GroupedGemm {
  GemmWeights w;
  int n_groups = 0;
  const int32_t* offsets = nullptr;       // [n_groups + 1]
  const int32_t* group_expert = nullptr;  // [n_groups] or null
  int64_t n_rows = 0;                     // rows of the sorted order (offsets[n_groups] at most)
  const __half* x = nullptr;
  const __half* x_lo = nullptr;  // split mode: the low parts of x (same layout), else null
  int64_t x_stride = 0;
  const float* x_scale = nullptr;   // [x_count] or null
  const int32_t* x_rows = nullptr;  // [n_rows] or null
  int64_t x_count = 0;              // rows of x (for clamping x_rows); n_rows when x_rows is null
  float* y = nullptr;               // row dst(r) at y + dst(r)·y_stride
  int64_t y_stride = 0;
  const int32_t* y_rows = nullptr;  // [n_rows] or null
  int64_t y_count = 0;              // rows of y (for clamping y_rows); unused when y_rows is null
  // Int8 mode (x_limbs given; x, x_lo and x_scale null): the activations as convert_f32_to_int8
  // wrote them for x_count rows (n_rows without x_rows), x_stride its limb_stride. Q2_K weights
  // (gemm_int8_supports); tiles of 64 rows × 128 features. kAuto takes the wgmma kernel
  // (cuda/gemm_wgmma_int8.cu) on compute capability 9 where weight rows are multiples of 16 bytes
  // (n_in a multiple of 1024) and x rows · x_stride < 2^31, on 16-row tiles for groups of few rows
  // as split mode does where n_in ≤ 2048 (kWgmmaNarrow, kWgmmaNarrowPair; the same bits as its
  // 64-row tile; cuda/gemm_wgmma_int8_regs.cu); kWgmma
  // asks for it (an error where it does not apply), kSmall and kLarge for the mma.sync one
  // (cuda/gemm_int8.cu). Every code × limb
  // product and every sum over a 256-block is exact (int8 tensor cores, int32), each block's sum
  // is scaled in f32: against the exact Σ x·w the error is ≤ 2^-22·Σ_k |w_k|·M(k) (M(k): the
  // largest |x| of k's 256-block; the fixed-point rounding) plus f32 rounding of the per-block
  // terms, ≈ (k/256 + 8)·2^-23·Σ|x·w| (tests/cuda/gemm_split_test.cc, GemmInt8, states the bound).
  const int8_t* x_limbs = nullptr;
  const uint8_t* x_records = nullptr;
};
Status grouped_gemm(const GroupedGemm& g, cudaStream_t stream, GemmTile tile = GemmTile::kAuto);

// Token-to-expert routing sorted by expert (a stable counting sort on the device) for
// grouped_gemm. Input: topk[t·top_k + j] = the j-th expert of token t, for n_tokens tokens. A
// "pair" p = t·top_k + j; the sorted order lists the pairs expert by expert, each expert's pairs in
// increasing p. Outputs (device arrays the caller allocates):
//   offsets[n_expert + 1]   expert e owns sorted rows [offsets[e], offsets[e+1])
//   row_pair[n_pairs]       the pair at sorted row r (route weight lookup)
//   row_token[n_pairs]      its token, row_pair[r] / top_k (grouped_gemm's x_rows)
//   pair_row[n_pairs]       the inverse: the sorted row of pair p (for the combine after MoE down)
//   row_weight[n_pairs]     pair_weight[row_pair[r]] (the route weights in sorted order), when
//                           both are given
// A pair whose expert id is outside [0, n_expert) gets no row: pair_row = -1, and the rows past
// offsets[n_expert] are left unwritten. workspace: sort_by_expert_workspace_bytes() device bytes.
struct ExpertSort {
  const int32_t* topk = nullptr;
  int64_t n_tokens = 0;
  int top_k = 0;
  int n_expert = 0;
  int32_t* offsets = nullptr;
  int32_t* row_pair = nullptr;
  int32_t* row_token = nullptr;
  int32_t* pair_row = nullptr;
  const float* pair_weight = nullptr;  // [n_pairs] or null
  float* row_weight = nullptr;         // [n_pairs] or null
  void* workspace = nullptr;
};
size_t sort_by_expert_workspace_bytes(int64_t n_tokens, int top_k, int n_expert);
Status sort_by_expert(const ExpertSort& s, cudaStream_t stream);

// out[r·out_stride + c] = f16(x[r·x_stride + c]·2^s_r) (round to nearest even, finite values
// beyond ±65504 saturated, infinities and NaN kept)
// for r < n_rows, c < cols, and row_scale[r] = 2^-s_r, the factor gemm() multiplies row r's
// products by. With row_scale null, s_r = 0 (values beyond ±65504 saturate); otherwise s_r puts the
// row's largest magnitude m into [2^14, 2^15) (s_r = 14 − floor(log2 m), kept within ±126; s_r = 0
// for a row of zeros or one holding an infinity or NaN, which then flows on as in f32).
Status convert_f32_to_f16(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, __half* out,
                          int64_t out_stride, float* row_scale, cudaStream_t stream);

// Int8 mode's activations (cols a multiple of 256, limb_stride ≥ cols and a multiple of 16): per
// row r and 256-block b a power-of-two scale 2^E with the block's largest |x|/2^E in [2^21, 2^22],
// X = round(x / 2^E) as three signed int8 limbs (X = l0 + 2^8·l1 + 2^16·l2) at
// limbs[l·n_rows·limb_stride + r·limb_stride + c], and an 80-byte record at
// records[(r·cols/256 + b)·80] (group sums of 16 elements and 2^E; cuda/gemm_int8_codes.cuh).
// limbs: 3·n_rows·limb_stride bytes, records: n_rows·cols/256·80 bytes, both 16-byte aligned.
// A block holding an infinity or NaN makes every output it touches NaN.
Status convert_f32_to_int8(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, int8_t* limbs,
                           int64_t limb_stride, uint8_t* records, cudaStream_t stream);
// The same for the routed experts' SwiGLU rows (moe.h's swiglu: silu(min(g, L))·clamp(u, ±L), times
// weights[r] when weights is not null; gate and up rows stride apart), computed as they are read:
// the limbs and records of what swiglu() would write, bit for bit, without writing it.
Status convert_swiglu_to_int8(const float* gate, const float* up, int64_t stride, const float* weights, float limit,
                              int64_t n_rows, int64_t cols, int8_t* limbs, int64_t limb_stride, uint8_t* records,
                              cudaStream_t stream);

// Split mode's activations: as convert_f32_to_f16 with a row factor (row_scale required), and
// lo[r·out_stride + c] = f16(v − hi) for v = x·2^s_r and hi its f16 (v − hi is exact in f32), so
// hi + lo is v to 2^-22·|v| (2^-25 absolute below f16's normal range; the row's largest magnitude
// is ≥ 2^14). Infinities and NaN: hi as convert_f32_to_f16, lo = 0.
Status convert_f32_to_f16_split(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, __half* hi,
                                __half* lo, int64_t out_stride, float* row_scale, cudaStream_t stream);

}  // namespace dsv4::cuda

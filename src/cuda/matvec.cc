// matvec.h: argument validation, choice between the fast and the reference kernel, and the
// default launch shape of the fast kernel.
#include "cuda/matvec.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "cuda/check.h"
#include "cuda/device_info.h"
#include "cuda/matvec_launch.h"

namespace dsv4::cuda {

namespace {

bool is_weight_type(TensorType t) {
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q8_0:
    case TensorType::Q2_K:
    case TensorType::Q4_K:
    case TensorType::IQ2_XXS: return true;
    default: return false;
  }
}

bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

int pow2_floor(int64_t v) {
  int p = 1;
  while (p * 2 <= v && p < (1 << 30)) p *= 2;
  return p;
}

bool mma_type(TensorType t) { return detail::mma_stage_elems(t) > 0; }

// The formats of the routed experts' row-tile kernel (matvec_2bit.cu).
bool row_tile_quant(TensorType t) { return detail::rt2_item_elems(t) > 0; }

// Launch shape. Five kernels, chosen by the type and the shape only (measured on an H200,
// docs/PERF.md "Lever: decode matvec"):
//  * the Q8_0 row-tile kernel (matvec_q8.cu, rows_per_warp 32) for Q8_0 rows of a multiple of 256
//    elements (every Q8_0 matrix of the model); W = q8_warps_per_row(n_in, n_out), the grid what
//    fits the GPU at once;
//  * the 2-bit row-tile kernel (matvec_2bit.cu, rows_per_warp 32) for Q2_K and Q4_K rows of a
//    multiple of 256 and IQ2_XXS rows of a multiple of 512 elements (the routed experts) whose
//    launch has at most 32768 activations (n_xvec · n_in, staged in shared memory); W =
//    rt2_warps_per_row(type, n_in, n_out), the grid what fits the GPU at once;
//  * the F16 row-tile kernel (matvec_f16.cu, rows_per_warp 32) for one-slot F16 launches (or one
//    token pair of them) of at least 4096 rows of a multiple of 64 elements (the indexer's q_b);
//    W = f16_warps_per_row(n_in, n_out), one block of 8 warps per SM;
//  * the tensor-core kernel (matvec_mma.cu, rows_per_warp 16) for other Q2_K, Q4_K and IQ2_XXS, and
//    for other Q8_0 rows from 65 536 rows on, whenever the launch's activations fit its shared
//    memory (n_xvec · n_in up to ≈25 000); W = 32768 / n_out warps per row, between 1 and 8 (more
//    warps than stages is allowed: it is how few-row launches reach every SM);
//  * the f32 kernel (matvec_fast.cu, rows_per_warp 1, 2 or 4) otherwise: W = 16384 / n_out, between
//    1 and 8 and at most the stages of a row.
// W fixes how a row's sum is split, so it depends only on the type, n_in and n_out, never on the
// number of slots or on the device: the bits of the result follow from the shape. R (f32 kernel:
// rows sharing one activation load) and the grid only decide who computes what: R is the largest
// of 4, 2, 1 whose units the resident groups share nearly evenly (at least 95 % of the best
// split), and the grid is what fits the GPU at once (or fewer blocks when there are fewer units),
// each group walking its units in turn. grid_slots counts a launch's slots as its units see them (a
// token pair is one), n_xvec the activation vectors it reads.
Result<MatvecPlan> make_plan(TensorType type, int64_t n_in, int64_t n_out, int grid_slots, int n_xvec, bool sum,
                             MatvecTuning tuning) {
  const int t_rows = tuning.rows_per_warp, t_warps = tuning.warps_per_row;
  if (t_rows != 0 && t_rows != 1 && t_rows != 2 && t_rows != 4 && t_rows != 16 && t_rows != 32) {
    return make_error("rows_per_warp must be 1, 2, 4, 16 or 32, not " + std::to_string(t_rows));
  }
  if (t_warps != 0 && t_warps != 1 && t_warps != 2 && t_warps != 4 && t_warps != 8 && t_warps != 16) {
    return make_error("warps_per_row must be 1, 2, 4, 8 or 16, not " + std::to_string(t_warps));
  }
  const int64_t sms = device_info().sms;
  MatvecPlan plan;
  plan.fast = true;
  const int64_t q8_sbs = n_in / 256;
  const bool q8_fits = type == TensorType::Q8_0 && n_in % 256 == 0 && n_in / 32 * 34 * 32 <= INT_MAX;
  // The 2-bit kernel stages the launch's activations in shared memory: at most 128 KB of them (6
  // slots of the experts' down projection take 48 KB, the 12 of a two-token step 96 KB), and the
  // block must fit with its rings.
  const int rt2_item = detail::rt2_item_elems(type);
  const int rt2_warps = t_warps ? t_warps : (rt2_item > 0 ? detail::rt2_warps_per_row(type, n_in, n_out) : 1);
  const int64_t rt2_x = static_cast<int64_t>(n_xvec) * n_in;
  const bool rt2_fits = rt2_item > 0 && n_in % rt2_item == 0 &&
                        n_in / gguf::type_traits(type)->block_elems * gguf::type_traits(type)->block_bytes * 32 <= INT_MAX &&
                        rt2_x <= 32768 && detail::rt2_smem_bytes(type, rt2_warps, rt2_x) <= detail::max_smem_per_block();
  // The F16 row-tile kernel: one slot (or one token pair: two activation vectors), not summed, rows
  // of a multiple of 64 whose activations fit shared memory; by default from kF16RowTileRows rows
  // (fewer tiles than that leave SMs idle: the f32 kernel stays there).
  constexpr int64_t kF16RowTileRows = 4096;
  const bool f16_fits = type == TensorType::F16 && grid_slots == 1 && (n_xvec == 1 || n_xvec == 2) && !sum &&
                        detail::f16_row_tile_fits(n_in, n_xvec);
  const bool f16_warps_ok = t_warps <= 8 && t_warps <= detail::f16_row_items(n_in);
  if (f16_fits && (t_rows == 32 || (t_rows == 0 && n_out >= kF16RowTileRows && f16_warps_ok))) {
    if (!f16_warps_ok) return make_error("the F16 row tiles split a row over at most 8 warps and its items");
    plan.rows_per_warp = 32;
    plan.warps_per_row = t_warps ? t_warps : detail::f16_warps_per_row(n_in, n_out);
    const int64_t groups = detail::f16_groups_per_block(plan.warps_per_row), tiles = (n_out + 31) / 32;
    plan.blocks = static_cast<int>(std::min<int64_t>(sms, (tiles + groups - 1) / groups));
    return plan;
  }
  // Items of a row the row-tile kernels split over warps: Q8_0 superblocks or 2-bit items.
  const int64_t rt_items = q8_fits ? q8_sbs : (rt2_fits ? n_in / rt2_item : 0);
  if (t_rows == 32) {
    if (!q8_fits && !rt2_fits) {
      return make_error("rows_per_warp 32 (the row-tile kernels) takes Q8_0, Q2_K or Q4_K rows of a multiple of "
                        "256, IQ2_XXS rows of a multiple of 512 (2-bit and Q4_K: at most 32768 activations per "
                        "launch), F16 rows of a multiple of 64 in one-slot launches");
    }
    if (t_warps > 8 || t_warps > rt_items) {
      return make_error("the row-tile kernels split a row over at most 8 warps and its items (256 or 512 elements)");
    }
  }
  if ((q8_fits || rt2_fits) && (t_rows == 32 || (t_rows == 0 && t_warps <= 8 && t_warps <= rt_items))) {
    plan.rows_per_warp = 32;
    plan.warps_per_row = t_warps ? t_warps
                         : q8_fits ? detail::q8_warps_per_row(n_in, n_out)
                                   : detail::rt2_warps_per_row(type, n_in, n_out);
    const int64_t units = grid_slots * ((n_out + 31) / 32);
    if (units > INT_MAX / 2) return make_error("too many outputs for one launch");
    // 2-bit: a block holds G groups of W warps.
    const int groups = q8_fits ? 1 : detail::rt2_groups_per_block(type, plan.warps_per_row, rt2_x);
    const int per_sm = q8_fits ? detail::q8_blocks_per_sm(plan.warps_per_row)
                               : detail::rt2_blocks_per_sm(type, groups * plan.warps_per_row, rt2_x);
    const int64_t capacity = sms * std::max(1, per_sm);
    plan.blocks = static_cast<int>(std::min(capacity, (units + groups - 1) / groups));
    return plan;
  }
  const bool mma_fits = mma_type(type) && n_in % 32 == 0 && n_in <= INT_MAX / 8 &&
                        detail::mma_smem_bytes(type, static_cast<int>(n_in), n_xvec) <= detail::max_smem_per_block();
  if (t_rows == 16 && !mma_fits) {
    return make_error("rows_per_warp 16 (the tensor-core kernel) takes Q8_0, Q2_K, Q4_K or IQ2_XXS whose "
                      "activations fit shared memory");
  }
  constexpr int64_t kMmaQ8Rows = 65536;
  const bool mma_default = type != TensorType::Q8_0 || n_out >= kMmaQ8Rows;
  if (mma_fits && (t_rows == 16 || (t_rows == 0 && mma_default))) {
    constexpr int kBlockWarps = 16;
    constexpr int64_t kRowsForOneWarp = 32768;
    plan.rows_per_warp = 16;
    plan.warps_per_row =
        t_warps ? t_warps : pow2_floor(std::min<int64_t>(8, std::max<int64_t>(1, kRowsForOneWarp / n_out)));
    const int64_t groups_per_block = kBlockWarps / plan.warps_per_row;
    const int64_t units = grid_slots * ((n_out + 15) / 16);
    if (units > INT_MAX / 2) return make_error("too many outputs for one launch");
    plan.blocks = static_cast<int>(std::min(sms, (units + groups_per_block - 1) / groups_per_block));
    return plan;
  }
  if (t_warps == 16) return make_error("warps_per_row 16 is for the tensor-core kernel (rows_per_warp 16)");

  const int stage = detail::fast_stage_elems(type);
  if (stage <= 0) return make_error("no fast kernel for " + gguf::type_name(type));
  constexpr int kBlockWarps = 8;
  constexpr int64_t kRowsForOneWarp = 16384;
  const int64_t n_stages = (n_in + stage - 1) / stage;
  plan.warps_per_row =
      t_warps ? t_warps
              : pow2_floor(std::min<int64_t>({kBlockWarps, n_stages, std::max<int64_t>(1, kRowsForOneWarp / n_out)}));
  const int groups_per_block = kBlockWarps / plan.warps_per_row;
  struct Shape {
    int64_t units = 0, capacity = 0;  // units of work; blocks resident at once
    double balance = 0;               // mean over max units per group
  };
  auto shape = [&](int r) {
    Shape sh;
    sh.units = grid_slots * ((n_out + r - 1) / r);
    sh.capacity = sms * std::max(1, detail::fast_blocks_per_sm(type, r, sum));
    const int64_t groups = sh.capacity * groups_per_block;
    const int64_t rounds = (sh.units + groups - 1) / groups;
    sh.balance = static_cast<double>(sh.units) / static_cast<double>(rounds * groups);
    return sh;
  };
  if (t_rows) {
    plan.rows_per_warp = t_rows;
  } else {
    double best = 0;
    for (int r : {4, 2, 1}) best = std::max(best, shape(r).balance);
    plan.rows_per_warp = 1;
    for (int r : {4, 2, 1}) {
      if (shape(r).balance >= 0.95 * best) {
        plan.rows_per_warp = r;
        break;
      }
    }
  }
  const Shape sh = shape(plan.rows_per_warp);
  if (sh.units > INT_MAX / 2) return make_error("too many outputs for one launch");
  plan.blocks = static_cast<int>(std::min(sh.capacity, (sh.units + groups_per_block - 1) / groups_per_block));
  return plan;
}

// The activation vectors a launch reads (and the row-tile kernels stage).
int x_vectors(const ExpertMatvec& m) { return m.x_stride ? m.n_slots / m.slots_per_x : 1; }

// The RMSNorm a dense Q8_0 launch applies to its input (matvec_rms_norm).
struct FusedNorm {
  const float* w = nullptr;
  float eps = 0.0f;
};

// The shared body of the entry points.
Status run(const ExpertMatvec& m, bool dense, bool sum, float* y, cudaStream_t stream,
           MatvecImpl impl, MatvecTuning tuning, const char* fn, FusedNorm norm = FusedNorm{}) {
  auto fail = [&](const std::string& what) {
    return Status(make_error(std::string("cuda::") + fn + "(" + gguf::type_name(m.type) + ", " +
                             std::to_string(m.n_in) + " -> " + std::to_string(m.n_out) + "): " + what));
  };
  if (!is_weight_type(m.type)) return fail("not a weight type");
  const auto traits = gguf::type_traits(m.type);
  if (m.n_in <= 0 || m.n_in > INT_MAX || m.n_in % traits->block_elems != 0) {
    return fail("n_in must be a positive multiple of " + std::to_string(traits->block_elems));
  }
  if (m.n_out <= 0 || m.n_out > INT_MAX) return fail("n_out out of range");
  if (m.n_expert <= 0) return fail("n_expert must be positive");
  if (m.n_slots <= 0 || m.n_slots > 65535) return fail("n_slots must be in [1, 65535]");
  if (!m.w || !m.x || !y) return fail("null pointer");
  // Without expert ids slot j is slab j; token pairs then are one group of 2·pair_stride slots whose
  // first slots name slabs 0 .. pair_stride − 1 (a dense pair: 2 slots of slab 0).
  if (!m.experts && (m.pair_stride > 0 ? m.n_slots != 2 * m.pair_stride || m.pair_stride > m.n_expert
                                       : m.n_slots > m.n_expert)) {
    return fail("without expert ids, n_slots must be at most n_expert (with pairs: 2·pair_stride)");
  }
  if (m.x_stride < 0) return fail("negative x_stride");
  if (m.slots_per_x < 1 || m.n_slots % m.slots_per_x != 0) return fail("slots_per_x must divide n_slots");
  if (m.slots_per_x > 1 && (m.up || sum)) return fail("slots_per_x above 1 is for per-slot launches without up");
  if (m.pair_stride < 0 || (m.pair_stride > 0 && (m.up || sum || m.n_slots % m.pair_stride != 0))) {
    return fail("pair_stride needs per-slot launches without up whose slots are whole tokens of pair_stride");
  }
  if (!aligned(m.x, 4) || !aligned(y, 4) || !aligned(m.slot_scale, 4)) return fail("misaligned f32 pointer");
  if (m.up && (!aligned(m.up, 16) || !aligned(m.act_weights, 4))) return fail("misaligned up or act_weights");
  if (m.swiglu_rows && (m.up || sum || m.n_out % 32 != 0 || !aligned(m.act_weights, 4) || !row_tile_quant(m.type))) {
    return fail("swiglu_rows needs Q2_K, IQ2_XXS or Q4_K rows per slot, n_out a multiple of 32, no up "
                "(can_swiglu_rows)");
  }

  const int64_t row_bytes = m.n_in / traits->block_elems * traits->block_bytes;
  int64_t slab_bytes = 0, total = 0;
  if (__builtin_mul_overflow(row_bytes, m.n_out, &slab_bytes) ||
      __builtin_mul_overflow(slab_bytes, m.n_expert, &total)) {
    return fail("tensor size overflows");
  }

  const bool fast_ok = aligned(m.w, 16) && aligned(m.x, 16) && m.x_stride % 4 == 0 &&
                       (traits->block_elems > 1 || row_bytes % 16 == 0);
  bool fast = false;
  switch (impl) {
    case MatvecImpl::kAuto: fast = fast_ok; break;
    case MatvecImpl::kFast:
      if (!fast_ok) {
        return fail("the fast kernel needs 16-byte aligned weights and activations (and rows of a "
                    "multiple of 16 bytes for plain types)");
      }
      fast = true;
      break;
    case MatvecImpl::kReference: fast = false; break;
  }
  if ((m.up || m.swiglu_rows || m.slots_per_x > 1) && !fast) {
    return fail("the fused SwiGLU needs the fast kernel (16-byte aligned weights and rows)");
  }
  if (!m.experts && m.pair_stride > 0 && !fast) {
    return fail("without expert ids, token pairs need the fast kernel (16-byte aligned weights and rows)");
  }

  detail::MatvecLaunch l{};
  l.type = m.type;
  l.w = static_cast<const uint8_t*>(m.w);
  l.w_end = l.w + total;
  l.row_bytes = row_bytes;
  l.slab_bytes = slab_bytes;
  l.experts = dense ? nullptr : m.experts;
  l.x = m.x;
  l.x_stride = m.x_stride;
  l.slots_per_x = m.slots_per_x;
  l.up = m.up;
  l.act_weights = m.act_weights;
  l.act_limit = m.act_limit;
  l.swiglu_rows = m.swiglu_rows;
  l.norm_w = norm.w;
  l.norm_eps = norm.eps;
  l.scale = m.slot_scale;
  l.y = y;
  l.n_in = static_cast<int>(m.n_in);
  l.n_out = static_cast<int>(m.n_out);
  l.n_slots = m.n_slots;
  l.sum = sum;
  l.iq2_tables = nullptr;
  if (m.type == TensorType::IQ2_XXS) {
    const Status s = cuda_status(detail::iq2_device_tables(stream, &l.iq2_tables),
                                 "uploading the IQ2_XXS tables (call prepare_matvec before graph capture)");
    if (!s.ok()) return fail(s.message());
  }

  cudaError_t e;
  if (fast) {
    // The f32 kernel (and, for one pair, the F16 row tile) computes a pair as one unit of two tokens.
    const bool float_pairs = m.pair_stride > 0 && detail::fast_pairs_type(m.type);
    const int grid_slots = sum ? 1 : float_pairs ? detail::token_pairs(m.n_slots, m.pair_stride) : m.n_slots;
    auto plan = make_plan(m.type, m.n_in, m.n_out, grid_slots, x_vectors(m), sum, tuning);
    if (!plan.ok()) return fail(plan.error().message);
    if (m.slots_per_x > 1 && (plan->rows_per_warp != 32 || !row_tile_quant(m.type))) {
      return fail("slots_per_x above 1 needs the 2-bit row-tile kernel (can_share_x)");
    }
    if (norm.w && (plan->rows_per_warp != 32 || m.type != TensorType::Q8_0 || !aligned(norm.w, 16) ||
                   (m.n_slots == 2 && m.pair_stride != 1))) {
      return fail("the fused RMSNorm needs the Q8_0 row-tile kernel and 16-byte aligned weights (can_fuse_rms_norm)");
    }
    if ((m.up || m.swiglu_rows) && plan->rows_per_warp != 32) {
      return fail("the fused SwiGLU needs a row-tile kernel (can_fuse_swiglu, can_swiglu_rows)");
    }
    l.rows_per_warp = plan->rows_per_warp;
    l.warps_per_row = plan->warps_per_row;
    l.blocks = plan->blocks;
    if (float_pairs) l.pair_stride = m.pair_stride;
    // Without expert ids a pair's second slot is slab 0 only to a kernel that pairs.
    if (!m.experts && m.pair_stride > 0 && !float_pairs && !(m.type == TensorType::Q8_0 && plan->rows_per_warp == 32)) {
      return fail("without expert ids, token pairs need a kernel that pairs (Q8_0 or F16 row tiles, float formats)");
    }
    // Token pairs on the Q8_0 row tile: half the units, a little more shared memory a warp.
    if (m.pair_stride > 0 && m.type == TensorType::Q8_0 && plan->rows_per_warp == 32) {
      l.pair_stride = m.pair_stride;
      const int64_t units = int64_t{detail::token_pairs(m.n_slots, m.pair_stride)} * ((m.n_out + 31) / 32);
      const int64_t capacity = device_info().sms * std::max(1, detail::q8_blocks_per_sm(plan->warps_per_row, true));
      l.blocks = static_cast<int>(std::min(capacity, units));
    }
    switch (plan->rows_per_warp) {
      case 16: e = detail::launch_matvec_mma(l, stream); break;
      case 32:
        e = m.type == TensorType::Q8_0  ? detail::launch_matvec_q8(l, stream)
            : m.type == TensorType::F16 ? detail::launch_matvec_f16(l, stream)
                                        : detail::launch_matvec_2bit(l, stream);
        break;
      default: e = detail::launch_matvec_fast(l, stream); break;
    }
  } else {
    e = detail::launch_matvec_ref(l, stream);
  }
  const Status s = cuda_status(e, fast ? "fast kernel launch" : "reference kernel launch");
  return s.ok() ? s : fail(s.message());
}

// A dense matrix is slab 0 of a one-expert tensor (experts == null in the launch).
ExpertMatvec dense_matvec(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x) {
  ExpertMatvec m;
  m.type = type;
  m.w = w;
  m.n_in = n_in;
  m.n_out = n_out;
  m.n_expert = 1;
  m.n_slots = 1;
  m.x = x;
  return m;
}

// Whether m (default tuning) has the row-tile kernels' shape: positive sizes, whole x vectors,
// 16-byte aligned weights and activations, and a plan on a row tile (rows_per_warp 32: Q8_0, 2-bit
// or F16; the callers name the types they take).
bool plans_row_tile(const ExpertMatvec& m) {
  if (m.n_in <= 0 || m.n_out <= 0 || m.n_slots <= 0 || m.slots_per_x < 1 || m.n_slots % m.slots_per_x != 0 ||
      !aligned(m.w, 16) || !aligned(m.x, 16) || m.x_stride % 4 != 0) {
    return false;
  }
  const auto plan = make_plan(m.type, m.n_in, m.n_out, m.n_slots, x_vectors(m), false, MatvecTuning{});
  return plan.ok() && plan->rows_per_warp == 32;
}

}  // namespace

Status matvec(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x, float* y,
              cudaStream_t stream, MatvecImpl impl, MatvecTuning tuning) {
  const ExpertMatvec m = dense_matvec(type, w, n_in, n_out, x);
  return run(m, /*dense=*/true, /*sum=*/false, y, stream, impl, tuning, "matvec");
}

Status matvec_swiglu(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* gate,
                     const float* up, float limit, float* y, cudaStream_t stream, MatvecTuning tuning) {
  ExpertMatvec m = dense_matvec(type, w, n_in, n_out, gate);
  m.up = up;
  m.act_limit = limit;
  return run(m, /*dense=*/true, /*sum=*/false, y, stream, MatvecImpl::kAuto, tuning, "matvec_swiglu");
}

Status matvec_rms_norm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
                       const float* norm_w, float eps, float* y, cudaStream_t stream, MatvecTuning tuning, int tokens,
                       int64_t x_stride) {
  if (!norm_w) return make_error("cuda::matvec_rms_norm: null norm weights");
  if (tokens != 1 && tokens != 2) return make_error("cuda::matvec_rms_norm: one or two tokens");
  ExpertMatvec m = dense_matvec(type, w, n_in, n_out, x);
  if (tokens == 2) {  // slot 1 is the pair's second token of slab 0
    m.n_slots = 2;
    m.x_stride = x_stride ? x_stride : n_in;
    m.pair_stride = 1;
  }
  return run(m, /*dense=*/true, /*sum=*/false, y, stream, MatvecImpl::kFast, tuning, "matvec_rms_norm",
             FusedNorm{norm_w, eps});
}

bool can_fuse_rms_norm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
                       const float* norm_w) {
  if (type != TensorType::Q8_0 || !norm_w || n_in <= 0 || n_out <= 0 || !aligned(w, 16) || !aligned(x, 16) ||
      !aligned(norm_w, 16)) {
    return false;
  }
  const auto plan = make_plan(type, n_in, n_out, 1, 1, false, MatvecTuning{});
  return plan.ok() && plan->rows_per_warp == 32;
}

Status matvec_experts(const ExpertMatvec& m, float* y, cudaStream_t stream, MatvecImpl impl,
                      MatvecTuning tuning) {
  return run(m, /*dense=*/false, /*sum=*/false, y, stream, impl, tuning, "matvec_experts");
}

Status matvec_experts_sum(const ExpertMatvec& m, float* y, cudaStream_t stream, MatvecImpl impl,
                          MatvecTuning tuning) {
  return run(m, /*dense=*/false, /*sum=*/true, y, stream, impl, tuning, "matvec_experts_sum");
}

bool can_fuse_swiglu(const ExpertMatvec& m) {
  return (row_tile_quant(m.type) || m.type == TensorType::Q8_0) && aligned(m.up, 16) && plans_row_tile(m);
}

bool can_swiglu_rows(const ExpertMatvec& m) {
  return row_tile_quant(m.type) && !m.up && m.n_out % 32 == 0 && plans_row_tile(m);
}

bool on_row_tile(const ExpertMatvec& m) {
  return (row_tile_quant(m.type) || m.type == TensorType::Q8_0) && plans_row_tile(m);
}

bool can_share_x(const ExpertMatvec& m) {
  return m.slots_per_x == 1 || (row_tile_quant(m.type) && !m.up && plans_row_tile(m));
}

Status prepare_matvec() {
  const void* tables = nullptr;
  DSV4_TRY(cuda_status(detail::iq2_device_tables(nullptr, &tables), "uploading the IQ2_XXS tables"));
  DSV4_TRY(cuda_status(detail::prepare_matvec_q8(), "raising the row-tile matvec's shared-memory limit"));
  DSV4_TRY(cuda_status(detail::prepare_matvec_2bit(), "raising the 2-bit row-tile matvec's shared-memory limit"));
  DSV4_TRY(cuda_status(detail::prepare_matvec_f16(), "raising the F16 row-tile matvec's shared-memory limit"));
  return cuda_status(detail::prepare_matvec_mma(), "raising the tensor-core matvec's shared-memory limit");
}

Result<MatvecPlan> plan_matvec(TensorType type, int64_t n_in, int64_t n_out, int n_grid_slots,
                               MatvecTuning tuning) {
  return make_plan(type, n_in, n_out, n_grid_slots, /*n_xvec=*/1, /*sum=*/false, tuning);
}

}  // namespace dsv4::cuda

// gemm.h: argument validation and the choice of tile; the kernels are in gemm_kernel.cu and
// gemm_sort.cu.
#include "cuda/gemm.h"

#include <climits>
#include <cstdint>
#include <string>

#include "cuda/check.h"
#include "cuda/device_info.h"
#include "cuda/gemm_launch.h"
#include "cuda/matvec_launch.h"

namespace dsv4::cuda {

namespace {

using detail::aligned;

int64_t k_multiple(TensorType t) {
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q8_0: return 64;
    case TensorType::Q2_K:
    case TensorType::Q4_K:
    case TensorType::IQ2_XXS: return 256;
    default: return 0;
  }
}

// The large tile when it still gives every SM a CTA (its 64×64 warp tiles halve the shared-memory
// traffic per MAC) and the row groups average at least one large tile (else most of its rows
// would be padding), otherwise the small one. Dense: one group of n_rows.
// Split mode: both tiles have 64 rows, so only the CTA count decides.
Result<bool> pick_large(GemmTile tile, TensorType type, int64_t n_out, int64_t n_rows, int64_t n_groups, bool split) {
  if (tile == GemmTile::kSmall) return false;
  if (type == TensorType::F32) {
    if (tile == GemmTile::kLarge) return make_error("the large tile does not fit F32 weights");
    return false;
  }
  if (tile == GemmTile::kLarge) return true;
  const auto large = detail::gemm_tile_shape(true, split);
  if (!split && n_rows < n_groups * large.rows) return false;
  return (n_out + large.features - 1) / large.features * ((n_rows + large.rows - 1) / large.rows) >= device_info().sms;
}

// What both wgmma kernels need of a call: weight rows of a multiple of 16 bytes (their weight
// stages come by TMA) and x rows · x_stride < 2^31 (32-bit element offsets).
bool wgmma_operands_fit(int64_t row_bytes, int64_t x_rows, int64_t x_stride) {
  return row_bytes % 16 == 0 && x_rows * x_stride < (int64_t{1} << 31);
}

// The tile a call runs on. A wgmma tile (gemm_wgmma.cu) when asked for, or kAuto on a compute
// capability 9 device with split operands of a type it takes (Q8_0; gemm also F16, grouped_gemm
// also IQ2_XXS) and at least 512 rows. Grouped, kAuto picks the wgmma tile from the average rows
// per group (the offsets stay on the device): a group of r rows costs ⌈r/64⌉ 64 × 256 CTAs or
// 2·⌈r/128⌉ 128 × 128 ones, which differ where r mod 128 is in (0, 64], and the 64-token CTA costs
// more (it decodes twice the weight rows per token). The 64-token tile is grouped only. The kernel
// addresses X rows with 32-bit element offsets: x_rows (the rows of x) · x_stride < 2^31; its
// weight stages come by TMA, whose rows must be multiples of 16 bytes (Q8_0: n_in a multiple of
// 256; F16: of 8; IQ2_XXS: of 2048). Grouped calls averaging under kWgmmaNarrowBelow rows per group
// take a wgmma tile at any row count: the 16-token one alone under kWgmmaNarrowPairFrom, else its
// pair with the 64-token one (returned as kWgmma64: grouped_gemm adds the partner launch), which
// also takes the calls of 512 rows or more below kWgmma64Below.
// Otherwise an mma.sync tile (pick_large). n_groups is 0 for gemm().
Result<detail::GemmKernelTile> pick_tile(GemmTile tile, TensorType type, int64_t row_bytes, int64_t n_out, int64_t n,
                                         int64_t x_rows, int64_t x_stride, bool split, int64_t n_groups) {
  using T = detail::GemmKernelTile;
  const bool grouped = n_groups > 0;
  const bool type_ok =
      type == TensorType::Q8_0 || (!grouped && type == TensorType::F16) || (grouped && type == TensorType::IQ2_XXS);
  const bool takes = split && type_ok && wgmma_operands_fit(row_bytes, x_rows, x_stride);
  if (tile == GemmTile::kWgmma || tile == GemmTile::kWgmma64 || tile == GemmTile::kWgmmaTails ||
      tile == GemmTile::kWgmmaNarrow || tile == GemmTile::kWgmmaNarrowPair) {
    if (!takes || (tile != GemmTile::kWgmma && !grouped)) {
      return make_error("the wgmma tiles take split mode with Q8_0 weights (gemm: also F16; grouped_gemm: also "
                        "IQ2_XXS), weight rows of a multiple of 16 bytes, x rows · x_stride < 2^31; the "
                        "64-token and 16-token tiles and the pairs grouped_gemm only");
    }
    return tile == GemmTile::kWgmma64 || tile == GemmTile::kWgmmaNarrowPair ? T::kWgmma64
           : tile == GemmTile::kWgmmaNarrow                                 ? T::kWgmmaNarrow
                                                                            : T::kWgmma;
  }
  if (tile == GemmTile::kAuto && takes && grouped && n < kWgmmaNarrowBelow * n_groups && device_info().major == 9) {
    return n < kWgmmaNarrowPairFrom * n_groups ? T::kWgmmaNarrow : T::kWgmma64;
  }
  if (tile == GemmTile::kAuto && takes && n >= 512 && device_info().major == 9) {
    return !grouped || n >= kWgmma64Below * n_groups ? T::kWgmma : T::kWgmma64;
  }
  const auto large = pick_large(tile, type, n_out, n, grouped ? n_groups : 1, split);
  if (!large.ok()) return make_error(large.error().message);
  return *large ? T::kLarge : T::kSmall;
}

// Int8 mode's kernel: gemm_wgmma_int8.cu when asked for (kWgmma: its 64-token tile, kWgmmaNarrow:
// its 16-token one, kWgmmaNarrowPair: both, returned as kWgmma) or, with kAuto, on a compute
// capability 9 device: grouped calls averaging under kWgmmaNarrowPairFrom rows per group the
// 16-token tile, from it to under kWgmma64Below the pair (grouped_gemm adds the partner launch),
// from it the 64-token tile (the tiles' rules of split mode). It needs weight rows of a multiple of
// 16 bytes (TMA: Q2_K n_in a multiple of 1024) and x rows · x_stride < 2^31 (32-bit offsets); the
// 16-token tile rows of at most kInt8NarrowMaxIn elements (longer rows take the 64-token tile alone).
// Otherwise gemm_int8.cu (kSmall and kLarge ask for it; its one tile).
Result<detail::GemmKernelTile> pick_int8_tile(GemmTile tile, int64_t n_in, int64_t row_bytes, int64_t x_rows,
                                              int64_t x_stride, int64_t n, int64_t n_groups) {
  using T = detail::GemmKernelTile;
  const bool takes = wgmma_operands_fit(row_bytes, x_rows, x_stride);
  if (tile == GemmTile::kWgmma64 || tile == GemmTile::kWgmmaTails) {
    return make_error("int8 mode has no 64 × 256 wgmma tile (nor the tails pair)");
  }
  if (tile == GemmTile::kWgmma || tile == GemmTile::kWgmmaNarrow || tile == GemmTile::kWgmmaNarrowPair) {
    if (!takes) {
      return make_error("the int8 wgmma tiles take weight rows of a multiple of 16 bytes and "
                        "x rows · x_stride < 2^31");
    }
    if (tile != GemmTile::kWgmma && n_in > detail::kInt8NarrowMaxIn) {
      return make_error("the int8 16-token tile takes rows of at most " +
                        std::to_string(detail::kInt8NarrowMaxIn) + " elements");
    }
    return tile == GemmTile::kWgmmaNarrow ? T::kWgmmaNarrow : T::kWgmma;
  }
  if (tile != GemmTile::kAuto || !takes || device_info().major != 9) return T::kSmall;
  return n < kWgmmaNarrowPairFrom * n_groups && n_in <= detail::kInt8NarrowMaxIn ? T::kWgmmaNarrow : T::kWgmma;
}

// Checks shared by both entry points; fills the weight part of the launch.
Status check_weights(const GemmWeights& w, detail::GemmLaunch* l) {
  const int64_t mult = k_multiple(w.type);
  if (mult == 0) return make_error("not a weight type");
  if (w.n_in <= 0 || w.n_in > INT_MAX || w.n_in % mult != 0) {
    return make_error("n_in must be a positive multiple of " + std::to_string(mult));
  }
  if (w.n_out <= 0 || w.n_out > INT_MAX) return make_error("n_out out of range");
  if (w.n_expert <= 0 || w.n_expert > INT_MAX) return make_error("n_expert out of range");
  if (!w.w) return make_error("null weight pointer");
  if (!aligned(w.w, 16)) return make_error("weights must be 16-byte aligned");
  const auto traits = gguf::type_traits(w.type);
  const int64_t row_bytes = w.n_in / traits->block_elems * traits->block_bytes;
  int64_t slab = 0, total = 0;
  if (__builtin_mul_overflow(row_bytes, w.n_out, &slab) || __builtin_mul_overflow(slab, w.n_expert, &total)) {
    return make_error("tensor size overflows");
  }
  // The kernel addresses inside one matrix with 32-bit offsets.
  if (slab >= (int64_t{1} << 32)) return make_error("one matrix must be smaller than 4 GiB");
  l->type = w.type;
  l->w = static_cast<const uint8_t*>(w.w);
  l->w_end = l->w + total;
  l->row_bytes = row_bytes;
  l->slab_bytes = slab;
  l->n_in = static_cast<int>(w.n_in);
  l->n_out = static_cast<int>(w.n_out);
  l->n_expert = static_cast<int>(w.n_expert);
  l->iq2_tables = nullptr;
  return Status::ok_status();
}

// x_lo (split mode) only with a weight type the split kernels take.
Status check_x(const __half* x, const __half* x_lo, TensorType type, int64_t x_stride, int64_t n_in) {
  if (!x) return make_error("null activation pointer");
  if (!aligned(x, 16) || !aligned(x_lo, 16)) return make_error("activations must be 16-byte aligned");
  if (x_lo && !gemm_split_supports(type, n_in)) return make_error("no split GEMM for this weight type");
  if (x_stride < n_in || x_stride % 8 != 0) {
    return make_error("x_stride must be at least n_in and a multiple of 8");
  }
  return Status::ok_status();
}

Status launch(detail::GemmLaunch& l, cudaStream_t stream) {
  if (l.x_limbs) {
    if (detail::is_wgmma(l.tile)) {
      return cuda_status(detail::launch_gemm_wgmma_int8(l, stream), "int8 wgmma gemm kernel launch");
    }
    return cuda_status(detail::launch_gemm_int8(l, stream), "int8 gemm kernel launch");
  }
  if (l.type == TensorType::IQ2_XXS) {
    DSV4_TRY(cuda_status(detail::iq2_device_tables(stream, &l.iq2_tables),
                         "uploading the IQ2_XXS tables (call prepare_matvec before graph capture)"));
  }
  if (detail::is_wgmma(l.tile)) return cuda_status(detail::launch_gemm_wgmma(l, stream), "wgmma gemm kernel launch");
  return cuda_status(detail::launch_gemm(l, stream), "gemm kernel launch");
}

std::string describe(const char* fn, const GemmWeights& w) {
  return std::string("cuda::") + fn + "(" + gguf::type_name(w.type) + ", " + std::to_string(w.n_in) +
         " -> " + std::to_string(w.n_out) + "): ";
}

}  // namespace

bool gemm_supports(TensorType type, int64_t n_in) {
  const int64_t mult = k_multiple(type);
  return mult > 0 && n_in > 0 && n_in <= INT_MAX && n_in % mult == 0;
}

bool gemm_split_supports(TensorType type, int64_t n_in) {
  switch (type) {
    case TensorType::F16:
    case TensorType::Q8_0:
    case TensorType::Q2_K:
    case TensorType::Q4_K:
    case TensorType::IQ2_XXS: return gemm_supports(type, n_in);
    default: return false;
  }
}

bool gemm_int8_supports(TensorType type, int64_t n_in) {
  return type == TensorType::Q2_K && gemm_supports(type, n_in);
}

// The column slices of a gemm() call (GemmSplitK): 1 but on split mode's small mma.sync tile (the
// only one that takes a split-K launch; kAuto picks the large one only where it gives every SM a
// CTA), with scratch, where the tiles leave SMs without a CTA; there slices are doubled (a power of
// two, each a multiple of 256 columns, up to kMaxKSplits, the partials in the scratch) until the
// CTAs give every SM one.
int k_splits(const GemmWeights& w, detail::GemmKernelTile tile, bool split, int64_t n, const GemmSplitK& s) {
  if (!s.partials || !split || tile != detail::GemmKernelTile::kSmall) return 1;
  const auto shape = detail::gemm_tile_shape(false, true);
  const int64_t ctas = (n + shape.rows - 1) / shape.rows * ((w.n_out + shape.features - 1) / shape.features);
  const int64_t sms = device_info().sms, units = w.n_in / 256;
  const uint64_t slice_floats = static_cast<uint64_t>((n * w.n_out + 3) / 4 * 4);
  int splits = 1;
  while (w.n_in % 256 == 0 && 2 * splits <= kMaxKSplits && units % (2 * splits) == 0 && ctas * splits < sms &&
         2 * splits * slice_floats * sizeof(float) <= s.bytes) {
    splits *= 2;
  }
  return splits;
}

Result<int> gemm_k_splits(const GemmWeights& w, int64_t x_stride, int64_t n, GemmTile tile, bool split,
                          GemmSplitK split_k) {
  detail::GemmLaunch l{};
  DSV4_TRY(check_weights(w, &l));
  const auto kernel_tile = pick_tile(tile, w.type, l.row_bytes, w.n_out, n, n, x_stride, split, 0);
  if (!kernel_tile.ok()) return make_error(kernel_tile.error().message);
  return k_splits(w, *kernel_tile, split, n, split_k);
}

Status gemm(const GemmWeights& w, const __half* x, int64_t x_stride, const float* x_scale, int64_t n, float* y,
            int64_t y_stride, cudaStream_t stream, GemmTile tile, const __half* x_lo, GemmSplitK split_k) {
  const std::string where = describe("gemm", w);
  auto fail = [&](const Status& s) { return Status(make_error(where + s.message())); };
  detail::GemmLaunch l{};
  if (Status s = check_weights(w, &l); !s.ok()) return fail(s);
  if (w.n_expert != 1) return fail(make_error("gemm takes one matrix; use grouped_gemm for experts"));
  if (Status s = check_x(x, x_lo, w.type, x_stride, w.n_in); !s.ok()) return fail(s);
  if (n <= 0 || n > INT_MAX) return fail(make_error("n must be in [1, 2^31)"));
  if (!y) return fail(make_error("null output pointer"));
  if (y_stride < w.n_out) return fail(make_error("y_stride must be at least n_out"));
  const bool split = x_lo != nullptr;
  const auto kernel_tile = pick_tile(tile, w.type, l.row_bytes, w.n_out, n, n, x_stride, split, 0);
  if (!kernel_tile.ok()) return fail(make_error(kernel_tile.error().message));
  const int tile_rows = detail::gemm_tile_rows(*kernel_tile, split, false);
  if ((n + tile_rows - 1) / tile_rows > 65535) {
    return fail(make_error("too many rows for one launch"));
  }
  l.offsets = nullptr;
  l.group_expert = nullptr;
  l.n_groups = 1;
  l.n_rows = static_cast<int>(n);
  l.x = x;
  l.x_lo = x_lo;
  l.x_stride = x_stride;
  l.x_scale = x_scale;
  l.x_rows = nullptr;
  l.x_count = static_cast<int>(n);
  l.y = y;
  l.y_stride = y_stride;
  l.y_rows = nullptr;
  l.y_count = static_cast<int>(n);
  l.tile = *kernel_tile;
  const int splits = k_splits(w, l.tile, split, n, split_k);
  if (splits > 1) {
    const auto traits = gguf::type_traits(w.type);
    l.k_splits = splits;
    l.n_in = static_cast<int>(w.n_in / splits);
    l.w_split_bytes = l.n_in / traits->block_elems * traits->block_bytes;
    l.x_split = l.n_in;
    l.y = split_k.partials;
    l.y_stride = w.n_out;
    l.y_split_stride = (n * w.n_out + 3) / 4 * 4;  // even: the kernel's paired stores stay 8-byte aligned
  }
  if (Status s = launch(l, stream); !s.ok()) return fail(s);
  if (splits > 1) {
    const Status s = cuda_status(detail::launch_gemm_k_sum(split_k.partials, splits, l.y_split_stride, n,
                                                           static_cast<int>(w.n_out), y, y_stride, stream),
                                 "split-K sum launch");
    if (!s.ok()) return fail(s);
  }
  return Status::ok_status();
}

Status grouped_gemm(const GroupedGemm& g, cudaStream_t stream, GemmTile tile) {
  const std::string where = describe("grouped_gemm", g.w);
  auto fail = [&](const Status& s) { return Status(make_error(where + s.message())); };
  detail::GemmLaunch l{};
  if (Status s = check_weights(g.w, &l); !s.ok()) return fail(s);
  const bool int8 = g.x_limbs != nullptr;
  if (int8) {
    if (!gemm_int8_supports(g.w.type, g.w.n_in)) return fail(make_error("no int8 GEMM for this weight type"));
    if (g.x || g.x_lo || g.x_scale) return fail(make_error("int8 mode takes no f16 activations or row factors"));
    if (!g.x_records || !aligned(g.x_limbs, 16) || !aligned(g.x_records, 16)) {
      return fail(make_error("int8 mode needs 16-byte aligned limbs and records"));
    }
    if (g.x_stride < g.w.n_in || g.x_stride % 16 != 0) {
      return fail(make_error("x_stride must be at least n_in and a multiple of 16"));
    }
  } else if (Status s = check_x(g.x, g.x_lo, g.w.type, g.x_stride, g.w.n_in); !s.ok()) {
    return fail(s);
  }
  if (g.n_groups <= 0 || g.n_groups > 65535) return fail(make_error("n_groups must be in [1, 65535]"));
  if (!g.offsets) return fail(make_error("null offsets"));
  if (g.n_rows < 0 || g.n_rows > INT_MAX) return fail(make_error("n_rows out of range"));
  if (g.n_rows == 0) return Status::ok_status();  // nothing routed: nothing to write
  const int64_t x_count = g.x_rows ? g.x_count : g.n_rows;
  if (x_count <= 0 || x_count > INT_MAX) return fail(make_error("x_count out of range"));
  if (!g.y) return fail(make_error("null output pointer"));
  if (g.y_stride < g.w.n_out) return fail(make_error("y_stride must be at least n_out"));
  if (g.y_rows && (g.y_count <= 0 || g.y_count > INT_MAX)) return fail(make_error("y_count out of range"));
  // Grid rows: at most ⌈n_rows / tile⌉ + n_groups tiles (each group adds at most one partial one).
  const bool split = g.x_lo != nullptr;
  const auto kernel_tile =
      int8 ? pick_int8_tile(tile, g.w.n_in, l.row_bytes, x_count, g.x_stride, g.n_rows, g.n_groups)
           : pick_tile(tile, g.w.type, l.row_bytes, g.w.n_out, g.n_rows, x_count, g.x_stride, split, g.n_groups);
  if (!kernel_tile.ok()) return fail(make_error(kernel_tile.error().message));
  const int rows = detail::gemm_tile_rows(*kernel_tile, split, int8);
  if ((g.n_rows + rows - 1) / rows + g.n_groups > 65535) return fail(make_error("too many rows for one launch"));
  l.offsets = g.offsets;
  l.group_expert = g.group_expert;
  l.n_groups = g.n_groups;
  l.n_rows = static_cast<int>(g.n_rows);
  l.x = g.x;
  l.x_lo = g.x_lo;
  l.x_stride = g.x_stride;
  l.x_scale = g.x_scale;
  l.x_rows = g.x_rows;
  l.x_count = static_cast<int>(x_count);
  l.y = g.y;
  l.y_stride = g.y_stride;
  l.y_rows = g.y_rows;
  l.y_count = g.y_rows ? static_cast<int>(g.y_count) : static_cast<int>(g.n_rows);
  l.x_limbs = g.x_limbs;
  l.x_plane = x_count * g.x_stride;
  l.x_records = g.x_records;
  l.tile = *kernel_tile;
  // The 128-token tile paired with the 64-token one for the groups' short tails (GemmTile::kWgmmaTails),
  // the 64-token tile with the 16-token one for the groups of few rows (GemmTile::kWgmmaNarrowPair;
  // in int8 mode the 64-token tile is kWgmma, paired by kAuto below kWgmma64Below rows per group).
  const bool paired = tile == GemmTile::kAuto || tile == GemmTile::kWgmmaTails || tile == GemmTile::kWgmmaNarrowPair;
  const bool tails = !int8 && paired && l.tile == detail::GemmKernelTile::kWgmma;
  const bool few =
      paired && (int8 ? l.tile == detail::GemmKernelTile::kWgmma && g.w.n_in <= detail::kInt8NarrowMaxIn &&
                            (tile == GemmTile::kWgmmaNarrowPair || g.n_rows < kWgmma64Below * g.n_groups)
                      : l.tile == detail::GemmKernelTile::kWgmma64);
  l.tails = tails ? detail::GemmTails::kSkipShort : few ? detail::GemmTails::kSkipFew : detail::GemmTails::kAll;
  if (Status s = launch(l, stream); !s.ok()) return fail(s);
  if (tails || few) {
    l.tile = tails ? detail::GemmKernelTile::kWgmma64 : detail::GemmKernelTile::kWgmmaNarrow;
    l.tails = tails ? detail::GemmTails::kOnlyShort : detail::GemmTails::kOnlyFew;
    if (Status s = launch(l, stream); !s.ok()) return fail(s);
  }
  return Status::ok_status();
}

size_t sort_by_expert_workspace_bytes(int64_t n_tokens, int top_k, int n_expert) {
  if (n_tokens <= 0 || top_k <= 0 || n_expert <= 0) return 0;
  const int64_t chunks = (n_tokens * top_k + detail::kSortChunk - 1) / detail::kSortChunk;
  return static_cast<size_t>(chunks) * static_cast<size_t>(n_expert) * sizeof(int32_t);
}

Status sort_by_expert(const ExpertSort& s, cudaStream_t stream) {
  auto fail = [&](const std::string& what) {
    return Status(make_error("cuda::sort_by_expert(" + std::to_string(s.n_tokens) + " tokens, top " +
                             std::to_string(s.top_k) + " of " + std::to_string(s.n_expert) + "): " + what));
  };
  if (s.n_tokens <= 0 || s.top_k <= 0 || s.n_expert <= 0) return fail("sizes must be positive");
  // Each count-and-scatter block keeps one counter per expert in shared memory.
  if (s.n_expert > 8192) return fail("at most 8192 experts");
  int64_t pairs = 0;
  if (__builtin_mul_overflow(s.n_tokens, int64_t{s.top_k}, &pairs) || pairs > INT_MAX) {
    return fail("too many (token, expert) pairs");
  }
  if (!s.topk || !s.offsets || !s.row_pair || !s.row_token || !s.pair_row || !s.workspace) {
    return fail("null pointer");
  }
  if (!aligned(s.workspace, 4)) return fail("misaligned workspace");
  if ((s.pair_weight == nullptr) != (s.row_weight == nullptr)) return fail("pair_weight and row_weight go together");
  const cudaError_t e = detail::launch_sort_by_expert(
      s.topk, static_cast<int>(pairs), s.top_k, s.n_expert, s.offsets, s.row_pair, s.row_token,
      s.pair_row, s.pair_weight, s.row_weight, static_cast<int32_t*>(s.workspace), stream);
  const Status st = cuda_status(e, "sort kernel launch");
  return st.ok() ? st : fail(st.message());
}

Status convert_f32_to_f16(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, __half* out,
                          int64_t out_stride, float* row_scale, cudaStream_t stream) {
  if (n_rows < 0 || cols < 0) return make_error("cuda::convert_f32_to_f16: negative size");
  if (n_rows == 0 || cols == 0) return Status::ok_status();
  if (!x || !out) return make_error("cuda::convert_f32_to_f16: null pointer");
  if (x_stride < cols || out_stride < cols) return make_error("cuda::convert_f32_to_f16: stride below cols");
  if (n_rows > INT_MAX / 2) return make_error("cuda::convert_f32_to_f16: too many rows");
  return cuda_status(
      detail::launch_convert_f32_to_f16(x, x_stride, n_rows, cols, out, nullptr, out_stride, row_scale, stream),
      "cuda::convert_f32_to_f16 launch");
}

namespace {

// The checks both int8 conversions share, after the empty case (`fn` names the caller).
Status check_int8_conversion(const char* fn, bool inputs, int64_t n_rows, int64_t cols, int64_t in_stride,
                             const int8_t* limbs, int64_t limb_stride, const uint8_t* records) {
  const std::string where = std::string("cuda::") + fn + ": ";
  if (!inputs || !limbs || !records) return make_error(where + "null pointer");
  if (cols % 256 != 0) return make_error(where + "cols must be a multiple of 256");
  if (in_stride < cols || limb_stride < cols || limb_stride % 16 != 0) {
    return make_error(where + "input stride below cols, or limb_stride below cols or not a multiple of 16");
  }
  if (!aligned(limbs, 16) || !aligned(records, 16)) return make_error(where + "misaligned output");
  if (n_rows > INT_MAX / 2) return make_error(where + "too many rows");
  return Status::ok_status();
}

}  // namespace

Status convert_f32_to_int8(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, int8_t* limbs,
                           int64_t limb_stride, uint8_t* records, cudaStream_t stream) {
  if (n_rows < 0 || cols < 0) return make_error("cuda::convert_f32_to_int8: negative size");
  if (n_rows == 0 || cols == 0) return Status::ok_status();
  DSV4_TRY(check_int8_conversion("convert_f32_to_int8", x != nullptr, n_rows, cols, x_stride, limbs, limb_stride,
                                 records));
  return cuda_status(detail::launch_convert_f32_to_int8(x, x_stride, n_rows, cols, limbs, limb_stride, records, stream),
                     "cuda::convert_f32_to_int8 launch");
}

Status convert_swiglu_to_int8(const float* gate, const float* up, int64_t stride, const float* weights, float limit,
                              int64_t n_rows, int64_t cols, int8_t* limbs, int64_t limb_stride, uint8_t* records,
                              cudaStream_t stream) {
  if (n_rows < 0 || cols < 0) return make_error("cuda::convert_swiglu_to_int8: negative size");
  if (n_rows == 0 || cols == 0) return Status::ok_status();
  DSV4_TRY(check_int8_conversion("convert_swiglu_to_int8", gate && up, n_rows, cols, stride, limbs, limb_stride,
                                 records));
  return cuda_status(detail::launch_convert_swiglu_to_int8(gate, up, stride, weights, limit, n_rows, cols, limbs,
                                                           limb_stride, records, stream),
                     "cuda::convert_swiglu_to_int8 launch");
}

Status convert_f32_to_f16_split(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, __half* hi,
                                __half* lo, int64_t out_stride, float* row_scale, cudaStream_t stream) {
  if (n_rows < 0 || cols < 0) return make_error("cuda::convert_f32_to_f16_split: negative size");
  if (n_rows == 0 || cols == 0) return Status::ok_status();
  if (!x || !hi || !lo || !row_scale) return make_error("cuda::convert_f32_to_f16_split: null pointer");
  if (x_stride < cols || out_stride < cols) return make_error("cuda::convert_f32_to_f16_split: stride below cols");
  if (n_rows > INT_MAX / 2) return make_error("cuda::convert_f32_to_f16_split: too many rows");
  return cuda_status(
      detail::launch_convert_f32_to_f16(x, x_stride, n_rows, cols, hi, lo, out_stride, row_scale, stream),
      "cuda::convert_f32_to_f16_split launch");
}

}  // namespace dsv4::cuda

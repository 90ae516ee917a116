// matvec.h: argument validation, choice between the fast and the reference kernel, and the
// default launch shape of the fast kernel.
#include "cuda/matvec.h"

#include <climits>
#include <cstdint>
#include <string>

#include "cuda/check.h"
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

// Default launch shape: split a row over as many warps as it has stages (up to the block's 8), and
// share each activation load among 4 rows, unless that leaves fewer than two blocks per SM.
Result<MatvecPlan> make_plan(TensorType type, int64_t n_in, int64_t n_out, int grid_slots,
                             MatvecTuning tuning) {
  const int stage = detail::fast_stage_elems(type);
  if (stage <= 0) return make_error("no fast kernel for " + gguf::type_name(type));
  const int t_rows = tuning.rows_per_warp, t_warps = tuning.warps_per_row;
  if (t_rows != 0 && t_rows != 1 && t_rows != 2 && t_rows != 4) {
    return make_error("rows_per_warp must be 1, 2 or 4, not " + std::to_string(t_rows));
  }
  if (t_warps != 0 && t_warps != 1 && t_warps != 2 && t_warps != 4 && t_warps != 8) {
    return make_error("warps_per_row must be 1, 2, 4 or 8, not " + std::to_string(t_warps));
  }
  const int64_t n_stages = (n_in + stage - 1) / stage;
  MatvecPlan plan;
  plan.fast = true;
  plan.warps_per_row = t_warps ? t_warps : (n_stages >= 8 ? 8 : pow2_floor(n_stages));
  int sms = 132;
  int device = 0;
  if (cudaGetDevice(&device) == cudaSuccess) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && v > 0) sms = v;
  }
  auto blocks = [&](int r) {
    const int64_t rows_per_block = int64_t{r} * (8 / plan.warps_per_row);
    return (n_out + rows_per_block - 1) / rows_per_block;
  };
  if (t_rows) {
    plan.rows_per_warp = t_rows;
  } else {
    plan.rows_per_warp = 4;
    while (plan.rows_per_warp > 1 && blocks(plan.rows_per_warp) * grid_slots < 2 * int64_t{sms}) {
      plan.rows_per_warp /= 2;
    }
  }
  plan.blocks = static_cast<int>(blocks(plan.rows_per_warp));
  return plan;
}

// The shared body of the three entry points.
Status run(const ExpertMatvec& m, bool dense, bool sum, float* y, cudaStream_t stream,
           MatvecImpl impl, MatvecTuning tuning, const char* fn) {
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
  if (!m.w || !m.x || !y || (!dense && !m.experts)) return fail("null pointer");
  if (m.x_stride < 0) return fail("negative x_stride");
  if (!aligned(m.x, 4) || !aligned(y, 4) || !aligned(m.slot_scale, 4)) return fail("misaligned f32 pointer");

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

  detail::MatvecLaunch l{};
  l.type = m.type;
  l.w = static_cast<const uint8_t*>(m.w);
  l.w_end = l.w + total;
  l.row_bytes = row_bytes;
  l.slab_bytes = slab_bytes;
  l.experts = dense ? nullptr : m.experts;
  l.x = m.x;
  l.x_stride = m.x_stride;
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
    auto plan = make_plan(m.type, m.n_in, m.n_out, sum ? 1 : m.n_slots, tuning);
    if (!plan.ok()) return fail(plan.error().message);
    l.rows_per_warp = plan->rows_per_warp;
    l.warps_per_row = plan->warps_per_row;
    e = detail::launch_matvec_fast(l, stream);
  } else {
    e = detail::launch_matvec_ref(l, stream);
  }
  const Status s = cuda_status(e, fast ? "fast kernel launch" : "reference kernel launch");
  return s.ok() ? s : fail(s.message());
}

}  // namespace

Status matvec(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x, float* y,
              cudaStream_t stream, MatvecImpl impl, MatvecTuning tuning) {
  // The dense matrix is slab 0 of a one-expert tensor (experts == null in the launch).
  ExpertMatvec m;
  m.type = type;
  m.w = w;
  m.n_in = n_in;
  m.n_out = n_out;
  m.n_expert = 1;
  m.n_slots = 1;
  m.x = x;
  return run(m, /*dense=*/true, /*sum=*/false, y, stream, impl, tuning, "matvec");
}

Status matvec_experts(const ExpertMatvec& m, float* y, cudaStream_t stream, MatvecImpl impl,
                      MatvecTuning tuning) {
  return run(m, /*dense=*/false, /*sum=*/false, y, stream, impl, tuning, "matvec_experts");
}

Status matvec_experts_sum(const ExpertMatvec& m, float* y, cudaStream_t stream, MatvecImpl impl,
                          MatvecTuning tuning) {
  return run(m, /*dense=*/false, /*sum=*/true, y, stream, impl, tuning, "matvec_experts_sum");
}

Status prepare_matvec() {
  const void* tables = nullptr;
  return cuda_status(detail::iq2_device_tables(nullptr, &tables), "uploading the IQ2_XXS tables");
}

Result<MatvecPlan> plan_matvec(TensorType type, int64_t n_in, int64_t n_out, int n_grid_slots,
                               MatvecTuning tuning) {
  return make_plan(type, n_in, n_out, n_grid_slots, tuning);
}

}  // namespace dsv4::cuda

// The harness of the matvec tests (matvec_test.cc): expected outputs from the CPU reference and
// the exact dot, their tolerance (kTol times the rounding scale, plus the 2-bit kernel's
// fixed-point bound), poisoned guards around every output, two launches compared bit for bit, and
// the dense and expert cases built from fresh random weights and activations.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/cuda_test_util.h"
#include "cuda/device_util.h"
#include "cuda/matvec.h"

namespace dsv4::cuda::testing {

inline constexpr double kTol = 1e-5;

// An expert launch's description: n_slots slots of n_in → n_out matrices picked by experts from
// n_expert, slot j's input at x + j·x_stride; the other fields as ExpertMatvec defaults them.
inline ExpertMatvec expert_launch(TensorType type, const void* w, int64_t n_in, int64_t n_out, int64_t n_expert,
                                  const int32_t* experts, int n_slots, const float* x, int64_t x_stride = 0) {
  ExpertMatvec m;
  m.type = type;
  m.w = w;
  m.n_in = n_in;
  m.n_out = n_out;
  m.n_expert = n_expert;
  m.experts = experts;
  m.n_slots = n_slots;
  m.x = x;
  m.x_stride = x_stride;
  return m;
}
inline constexpr int64_t kGuard = 64;

// got's first n values have want's bits (the first five that differ are reported by slot and row
// of per_slot outputs), and the kGuard values after them (got holds n + kGuard) kept the 0xFF
// poison the launch's output was filled with.
inline void expect_same_bits_and_guard(const std::vector<float>& got, const std::vector<float>& want, size_t n,
                                       int64_t per_slot, const char* got_name, const char* want_name) {
  ASSERT_GE(got.size(), n + static_cast<size_t>(kGuard));
  ASSERT_GE(want.size(), n);
  int bad = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!same_bits(got[i], want[i]) && ++bad <= 5) {
      ADD_FAILURE() << "slot " << i / static_cast<size_t>(per_slot) << " row " << i % static_cast<size_t>(per_slot)
                    << ": " << got_name << " " << got[i] << ", " << want_name << " " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << "of " << n;
  uint32_t poison = 0;
  for (size_t i = n; i < n + static_cast<size_t>(kGuard); ++i) {
    std::memcpy(&poison, &got[i], 4);
    ASSERT_EQ(poison, 0xFFFFFFFFu) << "written past the outputs at " << i;
  }
}

// Token pairs (ExpertMatvec::pair_stride = groups: slots j and j + groups read one slab) against the
// same slots unpaired, bit for bit: tokens · groups slots of fresh random weights, activations and
// scales, slot j of expert j mod groups.
struct PairCase {
  TensorType type;
  int64_t n_in, n_out;
  int tokens;   // slots = tokens · groups
  int groups;   // distinct slabs, the pair stride
  bool dense;   // no expert ids (one pair of slab 0: tokens 2, groups 1)
  bool scaled;  // slot_scale set
  MatvecTuning tuning;
};

inline void expect_pairs_same_bits_as_unpaired(const PairCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << gguf::type_name(c.type) << " " << c.n_in << " -> " << c.n_out << " tokens "
                                    << c.tokens << " groups " << c.groups << " dense " << c.dense << " scaled "
                                    << c.scaled << " rows/warp " << c.tuning.rows_per_warp << " warps "
                                    << c.tuning.warps_per_row);
  const Format& f = format_of(c.type);
  const int slots = c.tokens * c.groups;
  std::vector<int32_t> experts(static_cast<size_t>(slots));
  for (int j = 0; j < slots; ++j) experts[static_cast<size_t>(j)] = j % c.groups;
  const std::vector<uint8_t> w = random_rows(f, c.n_in, c.n_out * c.groups, rng);
  const std::vector<float> x = normal_vector(static_cast<size_t>(slots * c.n_in), rng);
  const std::vector<float> scale = normal_vector(static_cast<size_t>(slots), rng);
  const size_t n_y = static_cast<size_t>(slots * c.n_out);
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), dscale = upload(scale), dexp = upload(experts), dref(n_y * 4),
               dgot((n_y + kGuard) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dexp.ok() && dref.ok() && dgot.ok());
  ExpertMatvec m = expert_launch(c.type, dw.get(), c.n_in, c.n_out, c.groups, dexp.get<int32_t>(), slots,
                                 dx.get<float>(), c.n_in);
  if (c.scaled) m.slot_scale = dscale.get<float>();
  // The reference: the slots unpaired, with expert ids (a dense pair's second slot is slab 0 only
  // when paired); one launch a slot where a lone slot takes a row tile (a pair of F16 slots takes
  // the F16 row tile, their unpaired launch the f32 kernel, with other bits; the Q8_0 row tile's
  // bits do not depend on the slots of a launch).
  const Result<MatvecPlan> lone = plan_matvec(c.type, c.n_in, c.n_out, 1, c.tuning);
  ASSERT_TRUE(lone.ok());
  if (lone->rows_per_warp == 32) {
    for (int j = 0; j < slots; ++j) {
      ExpertMatvec one = m;
      one.n_slots = 1;
      one.experts = dexp.get<int32_t>() + j;
      one.x = dx.get<float>() + j * c.n_in;
      if (c.scaled) one.slot_scale = dscale.get<float>() + j;
      STATUS_ASSERT(matvec_experts(one, dref.get<float>() + j * c.n_out, stream.get(), MatvecImpl::kAuto, c.tuning));
    }
  } else {
    STATUS_ASSERT(matvec_experts(m, dref.get<float>(), stream.get(), MatvecImpl::kAuto, c.tuning));
  }
  m.pair_stride = c.groups;
  if (c.dense) m.experts = nullptr;
  CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
  STATUS_ASSERT(matvec_experts(m, dgot.get<float>(), stream.get(), MatvecImpl::kAuto, c.tuning));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  expect_same_bits_and_guard(download<float>(dgot, n_y + kGuard), download<float>(dref, n_y), n_y, c.n_out, "paired",
                             "unpaired");
}

inline std::string impl_name(MatvecImpl i) {
  switch (i) {
    case MatvecImpl::kAuto: return "auto";
    case MatvecImpl::kFast: return "fast";
    case MatvecImpl::kReference: return "reference";
  }
  return "?";
}

// A blocking stream: it waits for the legacy default stream, where the uploads (cudaMemcpy,
// cudaMemset) go, so the kernels never race them (device_util.h's TestStream does not).
class Stream {
 public:
  Stream() { ok_ = cudaStreamCreate(&s_) == cudaSuccess; }
  ~Stream() {
    if (ok_) cudaStreamDestroy(s_);
  }
  bool ok() const { return ok_; }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
  bool ok_ = false;
};

// n outputs with kGuard poisoned floats on each side.
struct Output {
  explicit Output(int64_t n) : buf(static_cast<size_t>(n + 2 * kGuard) * 4), n(n) {}
  float* get() const { return buf.get<float>() + kGuard; }
  DeviceBuffer buf;
  int64_t n;
};

// What one output should be: the CPU value, the exact value, the rounding scale, and the bound of
// the activations' fixed-point rounding where the kernel uses it.
struct Expected {
  double cpu = 0, exact = 0, scale = 0, fixed = 0;
};

// The 2-bit row-tile kernel rounds activations to three limbs, each element to ≤ 2^-22 of its
// 256-block's largest |x| (matvec_2bit.cuh): on wide-range activations the worst case of that
// (every rounding one way) may exceed kTol·Σ|w·x|, so it is allowed on top. The other kernels
// round like f32 (or use four limbs: exact beyond f32).
inline double fixed_point_bound(const Format& f, const RowRef& r) {
  return f.type == TensorType::IQ2_XXS || f.type == TensorType::Q2_K ? std::ldexp(r.block_max_scale, -22) : 0.0;
}

// Checks the guards, that every output was written and is close to its expected value.
inline void expect_outputs(const std::vector<float>& all, const std::vector<Expected>& want) {
  const int64_t n = static_cast<int64_t>(want.size());
  ASSERT_EQ(all.size(), static_cast<size_t>(n + 2 * kGuard));
  const float poison = all[0];
  for (int64_t i = 0; i < kGuard; ++i) {
    ASSERT_TRUE(std::isnan(all[static_cast<size_t>(i)]) && same_bits(all[static_cast<size_t>(i)], poison))
        << "guard before the output overwritten at " << i;
    ASSERT_TRUE(same_bits(all[static_cast<size_t>(kGuard + n + i)], poison))
        << "guard after the output overwritten at " << i;
  }
  int bad = 0;
  for (int64_t o = 0; o < n; ++o) {
    const double got = all[static_cast<size_t>(kGuard + o)];
    const Expected& e = want[static_cast<size_t>(o)];
    const double tol = kTol * e.scale + e.fixed + 1e-30;
    if (!std::isfinite(got) || std::fabs(got - e.cpu) > tol || std::fabs(got - e.exact) > tol) {
      if (++bad <= 5) {
        ADD_FAILURE() << "output " << o << ": got " << got << ", cpu " << e.cpu << ", exact "
                      << e.exact << ", tolerance " << tol;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "of " << n << " outputs";
}

// Runs `launch` twice (poisoning the output before each) and checks the first result against
// `want` and the second against the first, bit for bit.
template <class Launch>
void check_twice(Output& y, const std::vector<Expected>& want, cudaStream_t s, Launch launch) {
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    CUDA_ASSERT(cudaMemsetAsync(y.buf.get(), 0xFF, y.buf.size(), s));
    STATUS_ASSERT(launch());
    CUDA_ASSERT(cudaGetLastError());
    CUDA_ASSERT(cudaStreamSynchronize(s));
    std::vector<float> all(static_cast<size_t>(y.n + 2 * kGuard));
    CUDA_ASSERT(cudaMemcpy(all.data(), y.buf.get(), all.size() * 4, cudaMemcpyDeviceToHost));
    if (run == 0) {
      expect_outputs(all, want);
      if (::testing::Test::HasFatalFailure()) return;
      first = std::move(all);
    } else {
      int differ = 0;
      for (size_t i = 0; i < all.size(); ++i) differ += same_bits(all[i], first[i]) ? 0 : 1;
      EXPECT_EQ(differ, 0) << "outputs differ between two identical launches";
    }
  }
}

struct DenseCase {
  TensorType type;
  int64_t n_in, n_out;
  MatvecImpl impl = MatvecImpl::kAuto;
  MatvecTuning tuning = {};
  size_t w_offset = 0;  // bytes added to the 256-aligned allocation
  size_t x_offset = 0;  // floats
  bool wide_x = false;  // activations over 2^±20 with exact zeros, instead of Gaussian
};

// Gaussian activations, or (wide) ones spread over 2^-20..2^20 with every seventh one zero: the
// tensor-core kernel's fixed-point activations must stay exact where the block maximum allows.
inline std::vector<float> activations(int64_t n, bool wide, std::mt19937_64& rng) {
  std::vector<float> x = gaussian(n, rng);
  if (wide) {
    for (auto& v : x) {
      const uint64_t r = rng();
      v = r % 7 == 0 ? 0.0f : std::ldexp(v, static_cast<int>((r >> 8) % 41) - 20);
    }
  }
  return x;
}

inline void run_dense(const DenseCase& c) {
  const Format& f = format_of(c.type);
  const uint64_t seed = fresh_seed();
  std::ostringstream what;
  what << f.name << " " << c.n_in << " -> " << c.n_out << ", " << impl_name(c.impl) << ", rows/warp "
       << c.tuning.rows_per_warp << ", warps/row " << c.tuning.warps_per_row << ", w+" << c.w_offset
       << ", x+" << c.x_offset << (c.wide_x ? ", wide x" : "") << ", seed " << seed;
  SCOPED_TRACE(what.str());
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> w = random_rows(f, c.n_in, c.n_out, rng);
  const std::vector<float> x = activations(c.n_in, c.wide_x, rng);
  const int64_t rb = row_bytes(f, c.n_in);
  std::vector<Expected> want(static_cast<size_t>(c.n_out));
  for (int64_t o = 0; o < c.n_out; ++o) {
    const RowRef r = row_reference(f, w.data() + o * rb, x.data(), c.n_in);
    want[static_cast<size_t>(o)] = {r.cpu, r.exact, r.scale, fixed_point_bound(f, r)};
  }

  DeviceBuffer dw(w.size() + c.w_offset), dx((x.size() + c.x_offset) * 4);
  ASSERT_TRUE(dw.ok() && dx.ok());
  CUDA_ASSERT(cudaMemcpy(dw.bytes() + c.w_offset, w.data(), w.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(dx.get<float>() + c.x_offset, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaDeviceSynchronize());
  Output y(c.n_out);
  Stream s;
  ASSERT_TRUE(y.buf.ok() && s.ok());
  check_twice(y, want, s.get(), [&] {
    return matvec(c.type, dw.bytes() + c.w_offset, c.n_in, c.n_out, dx.get<float>() + c.x_offset,
                  y.get(), s.get(), c.impl, c.tuning);
  });
}

struct ExpertCase {
  TensorType type;
  int64_t n_in, n_out, n_expert;
  std::vector<int32_t> experts;
  bool x_per_slot = false;
  bool scaled = false;
  bool sum = false;
  MatvecImpl impl = MatvecImpl::kAuto;
  MatvecTuning tuning = {};
};

inline void run_experts(const ExpertCase& c) {
  const Format& f = format_of(c.type);
  const uint64_t seed = fresh_seed();
  const int k = static_cast<int>(c.experts.size());
  std::ostringstream what;
  what << f.name << " " << c.n_in << " -> " << c.n_out << " x" << c.n_expert << ", " << k
       << " slots, " << (c.sum ? "sum" : "per slot") << (c.x_per_slot ? ", x per slot" : ", shared x")
       << (c.scaled ? ", scaled" : "") << ", " << impl_name(c.impl) << ", rows/warp "
       << c.tuning.rows_per_warp << ", warps/row " << c.tuning.warps_per_row << ", seed " << seed;
  SCOPED_TRACE(what.str());
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> w = random_rows(f, c.n_in, c.n_out * c.n_expert, rng);
  const std::vector<float> x = gaussian(c.x_per_slot ? k * c.n_in : c.n_in, rng);
  std::vector<float> scale = gaussian(k, rng);
  if (!c.scaled) scale.assign(static_cast<size_t>(k), 1.0f);
  const int64_t rb = row_bytes(f, c.n_in);

  std::vector<Expected> want(static_cast<size_t>(c.sum ? c.n_out : k * c.n_out));
  for (int j = 0; j < k; ++j) {
    const float* xj = x.data() + (c.x_per_slot ? j * c.n_in : 0);
    for (int64_t o = 0; o < c.n_out; ++o) {
      const uint8_t* row = w.data() + (c.experts[static_cast<size_t>(j)] * c.n_out + o) * rb;
      const RowRef r = row_reference(f, row, xj, c.n_in);
      const double sj = scale[static_cast<size_t>(j)];
      Expected& e = want[static_cast<size_t>(c.sum ? o : j * c.n_out + o)];
      e.cpu += sj * r.cpu;
      e.exact += sj * r.exact;
      e.scale += std::fabs(sj) * r.scale;
      e.fixed += std::fabs(sj) * fixed_point_bound(f, r);
    }
  }

  DeviceBuffer dw(w.size()), dx(x.size() * 4), de(static_cast<size_t>(k) * 4), ds(static_cast<size_t>(k) * 4);
  ASSERT_TRUE(dw.ok() && dx.ok() && de.ok() && ds.ok());
  CUDA_ASSERT(cudaMemcpy(dw.get(), w.data(), w.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(dx.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(de.get(), c.experts.data(), static_cast<size_t>(k) * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(ds.get(), scale.data(), static_cast<size_t>(k) * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaDeviceSynchronize());
  ExpertMatvec m = expert_launch(c.type, dw.get(), c.n_in, c.n_out, c.n_expert, de.get<int32_t>(), k, dx.get<float>(),
                                 c.x_per_slot ? c.n_in : 0);
  m.slot_scale = c.scaled ? ds.get<float>() : nullptr;
  Output y(static_cast<int64_t>(want.size()));
  Stream s;
  ASSERT_TRUE(y.buf.ok() && s.ok());
  check_twice(y, want, s.get(), [&] {
    return c.sum ? matvec_experts_sum(m, y.get(), s.get(), c.impl, c.tuning)
                 : matvec_experts(m, y.get(), s.get(), c.impl, c.tuning);
  });
}

}  // namespace dsv4::cuda::testing

// cuda/norms.h against cpu::rms_norm, cpu::rope_* and cpu/sim.h on fresh random inputs.
//
// Tolerances: RMSNorm and RoPE repeat the CPU's f32 operations (the Σx² in double in another
// order, cos/sin of the same f32 angle in double): 1e-6 relative. The simulations are exact
// functions of their input: bit-equal. Where a simulation follows a norm, an input within an ulp
// of an e4m3 rounding midpoint may round the other way: at most a few such elements, each off by
// at most one e4m3 step.
#include "cuda/norms.h"

#include <gtest/gtest.h>

#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "cpu/rope.h"
#include "cpu/sim.h"
#include "cuda/device_util.h"
#include "cuda/prefill_attention.h"

namespace dsv4::cuda::testing {
namespace {

TEST(CudaNorms, RmsNormRowsMatchCpu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // 4 rows take the block-per-row kernel, 100 the warp-per-row one (norms.cu).
  for (const int T : {4, 100}) {
    SCOPED_TRACE(T);
    const int64_t n = 1024, in_stride = 1536, out_stride = 1100;
    const std::vector<float> in = normal_vector(static_cast<size_t>(T * in_stride), rng, 0.0f, 3.0f);
    const std::vector<float> w = normal_vector(static_cast<size_t>(n), rng, 1.0f, 0.1f);
    TestStream stream;
    DeviceBuffer din = upload(in), dw = upload(w), dout(static_cast<size_t>(T * out_stride) * 4);
    for (bool weighted : {true, false}) {
      STATUS_ASSERT(rms_norm_rows(din.get<float>(), in_stride, weighted ? dw.get<float>() : nullptr, n, 1e-6f,
                                  dout.get<float>(), out_stride, T, stream.get()));
      CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
      const std::vector<float> got = download<float>(dout, static_cast<size_t>(T * out_stride));
      for (int t = 0; t < T; ++t) {
        std::vector<float> want(static_cast<size_t>(n));
        cpu::rms_norm(in.data() + t * in_stride, weighted ? w.data() : nullptr, n, 1e-6f, want.data());
        EXPECT_LE(max_rel(got.data() + t * out_stride, want.data(), static_cast<size_t>(n), 1e-6), 1e-6) << t;
      }
    }
  }
}

// Counts elements off by more than 1e-6 relative; none may be off by more than an e4m3 step
// (1/8 of the value, or the subnormal step of its block).
struct Fp8Diff {
  int loose = 0;
  bool wild = false;
};
Fp8Diff compare_fp8(const float* got, const float* want, int64_t n) {
  Fp8Diff d;
  for (int64_t i = 0; i < n; ++i) {
    const double g = got[i], w = want[i];
    const double diff = std::fabs(g - w);
    if (diff <= 1e-6 * (std::fabs(w) + 1e-6)) continue;
    ++d.loose;
    if (!(diff <= std::fabs(w) / 7.0 + 1e-3)) d.wild = true;
  }
  return d;
}

// q_kv_finish's arguments for T tokens of H heads of hd at pos (device buffers the test owns).
QkvFinishArgs finish_args(float* q, const DeviceBuffer& kv, int64_t kv_stride, const float* kv_norm,
                          const DeviceBuffer& kv_out, const DeviceBuffer& omega, const DeviceBuffer& pos, int T, int H,
                          int hd, int n_rot) {
  QkvFinishArgs a;
  a.q = q;
  a.kv_in = kv.get<float>();
  a.kv_stride = kv_stride;
  a.kv_norm = kv_norm;
  a.kv_out = kv_out.get<float>();
  a.omega = omega.get<float>();
  a.pos0 = pos.get<int>();
  a.T = T;
  a.H = H;
  a.hd = hd;
  a.n_rot = n_rot;
  return a;
}

TEST(CudaNorms, QueryHeadsAndKvRowMatchCpu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int H = 4, hd = 512, n_rot = 64;
  const int64_t kv_stride = 1536;
  const cpu::YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> omega = cpu::rope_frequencies(n_rot, 160000.0f, &yarn);
  // 5 tokens take the block-per-row kernel, 70 the warp-per-row one (norms.cu).
  for (const int T : {5, 70}) {
    for (bool fp8 : {true, false}) {
      for (int pos0 : {0, 1000003}) {
        const std::vector<float> q = normal_vector(static_cast<size_t>(T * H * hd), rng, 0.0f, 2.0f);
        const std::vector<float> kv = normal_vector(static_cast<size_t>(T * kv_stride), rng);
        const std::vector<float> kv_norm = normal_vector(hd, rng, 1.0f, 0.1f);
        TestStream stream;
        DeviceBuffer dq = upload(q), dkv = upload(kv), dn = upload(kv_norm), dom = upload(omega);
        DeviceBuffer dout(static_cast<size_t>(T * hd) * 4), dpos = upload(std::vector<int>{pos0});
        QkvFinishArgs a =
            finish_args(dq.get<float>(), dkv, kv_stride, dn.get<float>(), dout, dom, dpos, T, H, hd, n_rot);
        a.fp8 = fp8;
        STATUS_ASSERT(q_kv_finish(a, stream.get()));
        CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
        const std::vector<float> got_q = download<float>(dq, q.size());
        const std::vector<float> got_kv = download<float>(dout, static_cast<size_t>(T * hd));
        for (int t = 0; t < T; ++t) {
          const cpu::RopeAngles ang = cpu::rope_angles(omega, pos0 + t);
          for (int h = 0; h < H; ++h) {
            std::vector<float> want(q.begin() + (t * H + h) * hd, q.begin() + (t * H + h + 1) * hd);
            cpu::rms_norm(want.data(), nullptr, hd, 1e-6f, want.data());
            cpu::rope_rotate(want.data(), hd, ang);
            EXPECT_LE(max_rel(got_q.data() + (t * H + h) * hd, want.data(), hd, 1e-4), 1e-6) << t << " " << h;
          }
          std::vector<float> want(kv.begin() + t * kv_stride, kv.begin() + t * kv_stride + hd);
          cpu::rms_norm(want.data(), kv_norm.data(), hd, 1e-6f, want.data());
          cpu::rope_rotate(want.data(), hd, ang);
          if (fp8) cpu::fp8_sim(want.data(), hd - n_rot);
          const Fp8Diff d = compare_fp8(got_kv.data() + t * hd, want.data(), hd);
          EXPECT_LE(d.loose, 3) << "kv row " << t;
          EXPECT_FALSE(d.wild) << "kv row " << t;
        }
      }
    }
  }
}

// QkvFinishArgs::q_exp: the query heads leave in prefill_attention.h's split form. Their value
// (hi + lo)·2^-e meets the f32 test's bar against the CPU at any T, and where the f32 output comes
// from the same (warp-per-row) kernel, T ≥ 64, it is bit for bit prefill_attention_split_queries
// of that output.
TEST(CudaNorms, SplitQueriesAreTheFinishedHeadsSplit) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int H = 4, hd = 512, n_rot = 64, pos0 = 777;
  const cpu::YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> omega = cpu::rope_frequencies(n_rot, 160000.0f, &yarn);
  for (const int T : {5, 70}) {
    SCOPED_TRACE(T);
    const std::vector<float> q = normal_vector(static_cast<size_t>(T * H * hd), rng, 0.0f, 2.0f);
    const std::vector<float> kv = normal_vector(static_cast<size_t>(T * hd), rng);
    TestStream stream;
    DeviceBuffer split_q = upload(q), f32_q = upload(q), dkv = upload(kv), dom = upload(omega);
    DeviceBuffer dout(static_cast<size_t>(T * hd) * 4), dpos = upload(std::vector<int>{pos0});
    const size_t exp_bytes = static_cast<size_t>(T * H) * sizeof(int);
    DeviceBuffer exp_fused(exp_bytes), exp_after(exp_bytes);
    QkvFinishArgs a = finish_args(split_q.get<float>(), dkv, hd, nullptr, dout, dom, dpos, T, H, hd, n_rot);
    a.q_exp = exp_fused.get<int>();
    STATUS_ASSERT(q_kv_finish(a, stream.get()));
    a.q = f32_q.get<float>();
    a.q_exp = nullptr;
    STATUS_ASSERT(q_kv_finish(a, stream.get()));
    STATUS_ASSERT(prefill_attention_split_queries(f32_q.get<float>(), exp_after.get<int>(), T, H, hd, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<__half> got = download<__half>(split_q, q.size() * 2);
    const std::vector<__half> after = download<__half>(f32_q, q.size() * 2);
    const std::vector<int> e = download<int>(exp_fused, static_cast<size_t>(T * H));
    const std::vector<int> e_after = download<int>(exp_after, static_cast<size_t>(T * H));
    for (int t = 0; t < T; ++t) {
      const cpu::RopeAngles ang = cpu::rope_angles(omega, pos0 + t);
      for (int h = 0; h < H; ++h) {
        const size_t row = static_cast<size_t>(t * H + h);
        std::vector<float> want(q.begin() + row * hd, q.begin() + (row + 1) * hd), value(static_cast<size_t>(hd));
        cpu::rms_norm(want.data(), nullptr, hd, 1e-6f, want.data());
        cpu::rope_rotate(want.data(), hd, ang);
        for (int d = 0; d < hd; ++d) {
          const double x =
              static_cast<double>(__half2float(got[row * 2 * hd + d])) + __half2float(got[row * 2 * hd + hd + d]);
          value[static_cast<size_t>(d)] = static_cast<float>(std::ldexp(x, -e[row]));
        }
        EXPECT_LE(max_rel(value.data(), want.data(), hd, 1e-4), 1e-6) << t << " " << h;
      }
    }
    if (T >= 64) {
      EXPECT_EQ(e, e_after);
      EXPECT_EQ(0, std::memcmp(got.data(), after.data(), got.size() * sizeof(__half)));
    }
  }
}

// Values with few mantissa bits over a wide range, so that rounding ties and subnormal e4m3 /
// e2m1 codes are common, plus zeros and an all-zero block.
std::vector<float> tie_heavy(size_t n, std::mt19937_64& rng) {
  std::vector<float> v(n);
  std::uniform_int_distribution<int> mant(0, 63), expo(-40, 12), sign(0, 1);
  for (size_t i = 0; i < n; ++i) {
    v[i] = (sign(rng) ? -1.0f : 1.0f) * std::ldexp(static_cast<float>(mant(rng)) / 16.0f, expo(rng));
    if (i % 97 == 0) v[i] = 0.0f;
  }
  for (size_t i = 0; i < std::min<size_t>(64, n); ++i) v[i] = 0.0f;
  return v;
}

TEST(CudaNorms, SimulationsAreBitExactWithCpu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (SimKind kind : {SimKind::kFp8, SimKind::kHadamardFp4}) {
    const int rows = 64, width = kind == SimKind::kFp8 ? 448 : 128;
    const std::vector<float> in = tie_heavy(static_cast<size_t>(rows * width), rng);
    TestStream stream;
    DeviceBuffer d = upload(in);
    STATUS_ASSERT(simulate_rows(d.get<float>(), rows, width, kind, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> got = download<float>(d, in.size());
    for (int r = 0; r < rows; ++r) {
      std::vector<float> want(in.begin() + r * width, in.begin() + (r + 1) * width);
      if (kind == SimKind::kFp8) {
        cpu::fp8_sim(want.data(), width);
      } else {
        cpu::hadamard(want.data(), width);
        cpu::fp4_sim(want.data(), width);
      }
      for (int i = 0; i < width; ++i) {
        ASSERT_EQ(0, std::memcmp(&got[static_cast<size_t>(r * width + i)], &want[static_cast<size_t>(i)], 4))
            << "row " << r << " elem " << i << ": " << got[static_cast<size_t>(r * width + i)] << " vs " << want[static_cast<size_t>(i)];
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

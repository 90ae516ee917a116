// cuda/hc.h against the CPU's hyper-connection ops (cpu/hc.h, cpu/ops.h) on fresh random inputs.
//
// Tolerances: the mixer's 24 sums of 16384 products are f32 on both sides in different orders
// (relative error ~1e-6 of Σ|w·x|); through the gates and the Sinkhorn projection the mixing
// coefficients then agree to 1e-5 absolute (they are O(1)), and the normalised outputs to 1e-5
// relative L2. The device takes the collapse's RMS factor from the Gram matrix of the streams
// (Σ_hj g_h·g_j·G[h][j], double), the CPU from Σ u² of the f32-rounded u = Σ_h g_h·X[h]: the two
// differ by the CPU's own rounding of u (≤ 4 ulp of Σ_h |g_h·X[h]| per value), ~1e-6 relative
// unless the streams cancel in u, which the gates (all positive) and these inputs rule out; the
// factor's error passes straight to the output, so 1e-5 relative L2 holds. hc_post repeats the
// CPU's operations in its order: 1e-6 relative. hc_post_collapse is held to the same bounds (its
// records are summed in another order, in double: far below them).
#include "cuda/hc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "cpu/hc.h"
#include "cpu/ops.h"
#include "cuda/device_util.h"
#include "quant/quant.h"

namespace dsv4::cuda::testing {
namespace {

constexpr float kEps = 1e-6f;

// An M-row F32 mixer over HD = 4·D columns in device memory d.
DeviceTensor f32_mixer(const DeviceBuffer& d, int M, int64_t HD) {
  DeviceTensor w;
  w.type = gguf::TensorType::F32;
  w.ne0 = HD;
  w.ne1 = M;
  w.row_bytes = HD * 4;
  w.data = d.bytes();
  return w;
}

struct HcCase {
  int T;
  int64_t D;
  gguf::TensorType fn_type;
  bool equal_streams = false;  // X[h] the same row for every h, as after the embedding
};

// The rows of a small matrix stored as F32 or F16, and their f32 values.
struct SmallMatrix {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

SmallMatrix make_matrix(gguf::TensorType type, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  SmallMatrix m;
  m.values = normal_vector(static_cast<size_t>(rows * cols), rng, 0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  const size_t esize = type == gguf::TensorType::F32 ? 4 : 2;
  m.bytes.resize(m.values.size() * esize);
  quant::quantize_row(type, m.values.data(), m.bytes.data(), rows * cols);
  quant::dequantize_row(type, m.bytes.data(), m.values.data(), rows * cols);
  return m;
}

// The CPU's collapse of one token's state xt (mixer sums in double, cpu::hc_mix or
// cpu::hc_head_gates, cpu::hc_weighted_sum, cpu::rms_norm) against the device's output row and,
// for hc_pre, its mixing coefficients (tolerances: the file's comment).
void expect_collapse_matches_cpu(const float* xt, int64_t D, const SmallMatrix& fn, const std::vector<float>& scale,
                                 const std::vector<float>& base, const std::vector<float>& norm, bool head,
                                 const float* got_out, const float* got_mix) {
  const int64_t HD = 4 * D;
  const int M = head ? 4 : kHcMix;
  std::vector<float> m(static_cast<size_t>(M));
  for (int k = 0; k < M; ++k) {
    double s = 0;
    for (int64_t i = 0; i < HD; ++i) s += double(fn.values[static_cast<size_t>(k * HD + i)]) * xt[i];
    m[static_cast<size_t>(k)] = static_cast<float>(s);
  }
  const float r = cpu::hc_flat_rms_scale(xt, HD, kEps);
  for (float& v : m) v *= r;
  std::vector<float> gates(static_cast<size_t>(cpu::hc_mix_size(4)));
  if (head) {
    cpu::hc_head_gates(m.data(), scale[0], base.data(), 4, kEps, gates.data());
  } else {
    cpu::hc_mix(m.data(), scale.data(), base.data(), 4, kEps, 20, gates.data());
    for (int i = 0; i < kHcMixSize; ++i) EXPECT_NEAR(got_mix[i], gates[static_cast<size_t>(i)], 1e-5) << "mix " << i;
  }
  std::vector<float> u(static_cast<size_t>(D));
  cpu::hc_weighted_sum(xt, gates.data(), 4, D, u.data());
  cpu::rms_norm(u.data(), norm.data(), D, kEps, u.data());
  EXPECT_LE(rel_l2(got_out, u.data(), static_cast<size_t>(D)), 1e-5);
}

void run_case(const HcCase& c, bool head, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "T=" << c.T << " D=" << c.D << " head=" << head << " equal streams="
                                     << c.equal_streams << " seed=" << seed);
  std::mt19937_64 rng(seed);
  const int64_t HD = 4 * c.D;
  const int M = head ? 4 : kHcMix;
  std::vector<float> x = normal_vector(static_cast<size_t>(c.T * HD), rng);
  if (c.equal_streams) {
    for (int t = 0; t < c.T; ++t) {
      for (int h = 1; h < 4; ++h) std::copy_n(x.begin() + t * HD, c.D, x.begin() + t * HD + h * c.D);
    }
  }
  const SmallMatrix fn = make_matrix(c.fn_type, M, HD, rng);
  const std::vector<float> scale = normal_vector(head ? 1 : 3, rng, 1.0f, 0.2f);
  const std::vector<float> base = normal_vector(static_cast<size_t>(M), rng, 0.0f, 0.5f);
  const std::vector<float> norm = normal_vector(static_cast<size_t>(c.D), rng, 1.0f, 0.1f);

  TestStream stream;
  DeviceBuffer dx = upload(x), dfn = upload(fn.bytes), ds = upload(scale), db = upload(base), dn = upload(norm);
  DeviceBuffer partial(static_cast<size_t>(hc_partial_doubles(c.T, c.D)) * 8);
  DeviceBuffer mix(static_cast<size_t>(c.T) * kHcMixSize * 4), out(static_cast<size_t>(c.T * c.D) * 4);
  HcPreArgs a;
  a.x = dx.get<float>();
  a.fn.type = c.fn_type;
  a.fn.ne0 = HD;
  a.fn.ne1 = M;
  a.fn.row_bytes = HD * (c.fn_type == gguf::TensorType::F32 ? 4 : 2);
  a.fn.data = dfn.bytes();
  a.scale = ds.get<float>();
  a.base = db.get<float>();
  a.norm = dn.get<float>();
  a.partial = partial.get<double>();
  a.mix = head ? nullptr : mix.get<float>();
  a.out = out.get<float>();
  a.T = c.T;
  a.D = c.D;
  STATUS_ASSERT(head ? hc_head(a, stream.get()) : hc_pre(a, stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<float> got_out = download<float>(out, static_cast<size_t>(c.T * c.D));
  const std::vector<float> got_mix = download<float>(mix, static_cast<size_t>(c.T) * kHcMixSize);

  for (int t = 0; t < c.T; ++t) {
    SCOPED_TRACE(::testing::Message() << "token " << t);
    expect_collapse_matches_cpu(x.data() + t * HD, c.D, fn, scale, base, norm, head, got_out.data() + t * c.D,
                                got_mix.data() + t * kHcMixSize);
  }
}

TEST(CudaHc, PreMatchesCpu) {
  for (const HcCase& c : {HcCase{1, 4096, gguf::TensorType::F16}, HcCase{3, 256, gguf::TensorType::F32},
                          HcCase{5, 96, gguf::TensorType::F16}, HcCase{2, 300, gguf::TensorType::F16},
                          HcCase{2, 4096, gguf::TensorType::F16, true}, HcCase{17, 300, gguf::TensorType::F16},
                          HcCase{70, 4096, gguf::TensorType::F16}, HcCase{33, 300, gguf::TensorType::BF16},
                          HcCase{2100, 128, gguf::TensorType::F32}}) {
    run_case(c, false, fresh_seed());
  }
}

TEST(CudaHc, HeadMatchesCpu) {
  for (const HcCase& c : {HcCase{1, 4096, gguf::TensorType::F16}, HcCase{4, 128, gguf::TensorType::F32},
                          HcCase{3, 300, gguf::TensorType::F32}, HcCase{1, 4096, gguf::TensorType::F16, true},
                          HcCase{16, 256, gguf::TensorType::F32}, HcCase{45, 4096, gguf::TensorType::F16}}) {
    run_case(c, true, fresh_seed());
  }
}

TEST(CudaHc, PostMatchesCpu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // T = 3: one group of 32 tokens, 3 live; 70: three groups, the last partial; 2100: groups run
  // back to back by each warp; 300 dims: a partial column block; 9 parts: the short kernel's parts
  // in two rounds of loads.
  for (const auto& [parts, T] : {std::pair{1, 3}, std::pair{6, 3}, std::pair{9, 3}, std::pair{1, 70},
                                 std::pair{6, 70}, std::pair{6, 2100}}) {
    SCOPED_TRACE(::testing::Message() << "parts=" << parts << " T=" << T);
    const int64_t D = 300;
    const std::vector<float> x = normal_vector(static_cast<size_t>(T * 4 * D), rng);
    const std::vector<float> f = normal_vector(static_cast<size_t>(T * parts * D), rng);
    const std::vector<float> extra = normal_vector(static_cast<size_t>(T * D), rng);
    const std::vector<float> mix = normal_vector(static_cast<size_t>(T * kHcMixSize), rng, 0.5f, 0.3f);
    TestStream stream;
    DeviceBuffer dx = upload(x), df = upload(f), de = upload(extra), dm = upload(mix);
    DeviceBuffer out(static_cast<size_t>(T * 4 * D) * 4);
    HcPostArgs a;
    a.x = dx.get<float>();
    a.f = df.get<float>();
    a.n_parts = parts;
    a.f_extra = parts > 1 ? de.get<float>() : nullptr;
    a.mix = dm.get<float>();
    a.out = out.get<float>();
    a.T = T;
    a.D = D;
    STATUS_ASSERT(hc_post(a, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> got = download<float>(out, static_cast<size_t>(T * 4 * D));
    for (int t = 0; t < T; ++t) {
      std::vector<float> ft(f.begin() + t * parts * D, f.begin() + t * parts * D + D);
      for (int i = 1; i < parts; ++i) {
        for (int64_t d = 0; d < D; ++d) ft[static_cast<size_t>(d)] += f[static_cast<size_t>((t * parts + i) * D + d)];
      }
      if (parts > 1) {
        for (int64_t d = 0; d < D; ++d) ft[static_cast<size_t>(d)] += extra[static_cast<size_t>(t * D + d)];
      }
      std::vector<float> want(static_cast<size_t>(4 * D));
      cpu::hc_post(x.data() + t * 4 * D, ft.data(), mix.data() + t * kHcMixSize, 4, D, want.data());
      EXPECT_LE(max_rel(got.data() + t * 4 * D, want.data(), want.size(), 1e-3), 1e-6) << "token " << t;
    }
  }
}

TEST(CudaHc, EmbeddingRowsAreWidenedIntoFourStreams) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t V = 50, D = 256;
  for (gguf::TensorType type : {gguf::TensorType::F16, gguf::TensorType::BF16, gguf::TensorType::F32}) {
    const std::vector<float> values = normal_vector(static_cast<size_t>(V * D), rng);
    const size_t esize = type == gguf::TensorType::F32 ? 4 : 2;
    std::vector<uint8_t> bytes(values.size() * esize);
    quant::quantize_row(type, values.data(), bytes.data(), V * D);
    const std::vector<int32_t> tokens = {7, 0, 49, 7};
    TestStream stream;
    DeviceBuffer dw = upload(bytes), dt = upload(tokens), dx(tokens.size() * 4 * D * 4);
    DeviceTensor e;
    e.type = type;
    e.ne0 = D;
    e.ne1 = V;
    e.row_bytes = D * static_cast<int64_t>(esize);
    e.data = dw.bytes();
    STATUS_ASSERT(embed_tokens(e, dt.get<int32_t>(), static_cast<int>(tokens.size()), dx.get<float>(), stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> got = download<float>(dx, tokens.size() * 4 * D);
    std::vector<float> row(static_cast<size_t>(D));
    for (size_t t = 0; t < tokens.size(); ++t) {
      quant::dequantize_row(type, bytes.data() + tokens[t] * D * esize, row.data(), D);
      for (int h = 0; h < 4; ++h) {
        for (int64_t d = 0; d < D; ++d) {
          ASSERT_EQ(got[t * 4 * D + h * D + d], row[static_cast<size_t>(d)]) << t << " " << h << " " << d;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

namespace dsv4::cuda::testing {
namespace {

// hc_post given the next mixer leaves the partial sums that a separate pass would compute: the
// collapse finished from them equals hc_pre / hc_head on the new state, bit for bit (the same
// column blocks, the same order of operations), also for one token's records taken alone.
TEST(CudaHc, PostLeavesTheNextMixersPartialSums) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  struct Case {
    bool head;
    int64_t D;
    int T;
  };
  for (const Case& c : {Case{false, 512, 2}, Case{true, 512, 2}, Case{false, 4096, 2}, Case{true, 300, 2},
                        Case{false, 4096, 150}, Case{true, 300, 40}}) {
    const auto [head, D, T] = c;
    SCOPED_TRACE(::testing::Message() << "head=" << head << " D=" << D << " T=" << T);
    const int M = head ? 4 : kHcMix;
    const int64_t HD = 4 * D;
    const std::vector<float> x = normal_vector(static_cast<size_t>(T * HD), rng);
    const std::vector<float> f = normal_vector(static_cast<size_t>(T * D), rng);
    const std::vector<float> mix = normal_vector(static_cast<size_t>(T * kHcMixSize), rng, 0.5f, 0.3f);
    const std::vector<float> fn = normal_vector(static_cast<size_t>(M * HD), rng, 0.0f, 0.02f);
    const std::vector<float> scale = normal_vector(3, rng, 1.0f, 0.2f);
    const std::vector<float> base = normal_vector(static_cast<size_t>(M), rng);
    const std::vector<float> norm = normal_vector(static_cast<size_t>(D), rng, 1.0f, 0.1f);
    TestStream stream;
    DeviceBuffer dx = upload(x), df = upload(f), dm = upload(mix), dfn = upload(fn), ds = upload(scale);
    DeviceBuffer db = upload(base), dn = upload(norm), next(static_cast<size_t>(T * HD) * 4);
    DeviceBuffer fused_partial(static_cast<size_t>(hc_partial_doubles(T, D)) * 8);
    DeviceBuffer plain_partial(static_cast<size_t>(hc_partial_doubles(T, D)) * 8);
    DeviceBuffer out_fused(static_cast<size_t>(T * D) * 4), out_plain(static_cast<size_t>(T * D) * 4);
    DeviceBuffer mix_fused(static_cast<size_t>(T * kHcMixSize) * 4), mix_plain(static_cast<size_t>(T * kHcMixSize) * 4);
    const DeviceTensor w = f32_mixer(dfn, M, HD);
    HcPostArgs p;
    p.x = dx.get<float>();
    p.f = df.get<float>();
    p.mix = dm.get<float>();
    p.out = next.get<float>();
    p.T = T;
    p.D = D;
    p.next_fn = &w;
    p.next_M = M;
    p.partial = fused_partial.get<double>();
    STATUS_ASSERT(hc_post(p, stream.get()));
    HcPreArgs a;
    a.x = next.get<float>();
    a.fn = w;
    a.scale = ds.get<float>();
    a.base = db.get<float>();
    a.norm = dn.get<float>();
    a.T = T;
    a.D = D;
    a.partial = fused_partial.get<double>();
    a.mix = mix_fused.get<float>();
    a.out = out_fused.get<float>();
    STATUS_ASSERT(head ? hc_head_from_partials(a, stream.get()) : hc_pre_from_partials(a, stream.get()));
    if (!head) {
      STATUS_ASSERT(hc_comb(a.mix, T, a.hc_eps, a.sinkhorn_iters, stream.get()));
    }
    a.partial = plain_partial.get<double>();
    a.mix = mix_plain.get<float>();
    a.out = out_plain.get<float>();
    STATUS_ASSERT(head ? hc_head(a, stream.get()) : hc_pre(a, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    EXPECT_EQ(download<float>(out_fused, static_cast<size_t>(T * D)), download<float>(out_plain, static_cast<size_t>(T * D)));
    if (!head) {
      EXPECT_EQ(download<float>(mix_fused, static_cast<size_t>(T * kHcMixSize)),
                download<float>(mix_plain, static_cast<size_t>(T * kHcMixSize)));
    } else {
      // The decode head collapses only the last token: its records start at hc_partial_doubles(T-1, D, 4).
      DeviceBuffer out_last(static_cast<size_t>(D) * 4);
      a.x = next.get<float>() + (T - 1) * HD;
      a.partial = fused_partial.get<double>() + hc_partial_doubles(T - 1, D, 4);
      a.out = out_last.get<float>();
      a.T = 1;
      STATUS_ASSERT(hc_head_from_partials(a, stream.get()));
      CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
      const std::vector<float> all = download<float>(out_plain, static_cast<size_t>(T * D));
      EXPECT_EQ(download<float>(out_last, static_cast<size_t>(D)), std::vector<float>(all.end() - D, all.end()));
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

namespace dsv4::cuda::testing {
namespace {

// A chunk of tokens finishes each token with one block for the whole row, a decode token with
// many blocks of 256 dims: both take the same records in the same order, so a token's collapse
// and mixing coefficients are the same bits whatever the chunk (decode steps match prefill);
// hc_comb projects one token's comb logits as a chunk's.
TEST(CudaHc, PreIsTheSameBitsForEveryChunkLength) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int T = 20;
  const int64_t D = 4096, HD = 4 * D;
  const std::vector<float> x = normal_vector(static_cast<size_t>(T * HD), rng);
  const std::vector<float> fn = normal_vector(static_cast<size_t>(kHcMix * HD), rng, 0.0f, 0.02f);
  const std::vector<float> scale = normal_vector(3, rng, 1.0f, 0.2f);
  const std::vector<float> base = normal_vector(static_cast<size_t>(kHcMix), rng);
  const std::vector<float> norm = normal_vector(static_cast<size_t>(D), rng, 1.0f, 0.1f);
  TestStream stream;
  DeviceBuffer dx = upload(x), dfn = upload(fn), ds = upload(scale), db = upload(base), dn = upload(norm);
  DeviceBuffer partial(static_cast<size_t>(hc_partial_doubles(T, D)) * 8);
  DeviceBuffer out_chunk(static_cast<size_t>(T * D) * 4), out_steps(static_cast<size_t>(T * D) * 4);
  DeviceBuffer mix_chunk(static_cast<size_t>(T * kHcMixSize) * 4), mix_steps(static_cast<size_t>(T * kHcMixSize) * 4);
  HcPreArgs a;
  a.x = dx.get<float>();
  a.fn = f32_mixer(dfn, kHcMix, HD);
  a.scale = ds.get<float>();
  a.base = db.get<float>();
  a.norm = dn.get<float>();
  a.partial = partial.get<double>();
  a.mix = mix_chunk.get<float>();
  a.out = out_chunk.get<float>();
  a.T = T;
  a.D = D;
  STATUS_ASSERT(hc_pre(a, stream.get()));
  for (int t = 0; t < T; ++t) {
    HcPreArgs one = a;
    one.x = dx.get<float>() + t * HD;
    one.partial = partial.get<double>() + hc_partial_doubles(t, D);
    one.mix = mix_steps.get<float>() + t * kHcMixSize;
    one.out = out_steps.get<float>() + t * D;
    one.T = 1;
    STATUS_ASSERT(hc_pre_from_partials(one, stream.get()));
  }
  STATUS_ASSERT(hc_comb(mix_steps.get<float>(), T, a.hc_eps, a.sinkhorn_iters, stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  EXPECT_EQ(download<float>(out_chunk, static_cast<size_t>(T * D)), download<float>(out_steps, static_cast<size_t>(T * D)));
  EXPECT_EQ(download<float>(mix_chunk, static_cast<size_t>(T * kHcMixSize)),
            download<float>(mix_steps, static_cast<size_t>(T * kHcMixSize)));
}

}  // namespace
}  // namespace dsv4::cuda::testing

namespace dsv4::cuda::testing {
namespace {

// From kHcTokenLaneMinTokens tokens on (the token-per-lane kernel) a token's records do not depend
// on the chunk it comes in: shorter of those chunks share each group of 32 tokens among 2 or 4
// warps, long ones give a warp whole groups, one after another; every split adds the same stage
// partials in the same order.
TEST(CudaHc, RecordsAreTheSameBitsForEveryChunkLength) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int T = 2100;
  const int64_t D = 320, HD = 4 * D;
  const std::vector<float> x = normal_vector(static_cast<size_t>(T * HD), rng);
  const std::vector<float> fn = normal_vector(static_cast<size_t>(kHcMix * HD), rng, 0.0f, 0.02f);
  TestStream stream;
  DeviceBuffer dx = upload(x), dfn = upload(fn);
  const DeviceTensor w = f32_mixer(dfn, kHcMix, HD);
  DeviceBuffer all(static_cast<size_t>(hc_partial_doubles(T, D)) * 8);
  STATUS_ASSERT(hc_mixer_partials(dx.get<float>(), w, kHcMix, T, D, all.get<double>(), stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<double> want = download<double>(all, static_cast<size_t>(hc_partial_doubles(T, D)));
  static_assert(kHcTokenLaneMinTokens == 64, "the chunks below: splits 4, 2 and 1");
  for (const auto& [t0, n] : {std::pair{5, 64}, std::pair{100, 200}, std::pair{1000, 1100}}) {
    SCOPED_TRACE(::testing::Message() << "tokens " << t0 << ".." << t0 + n);
    DeviceBuffer part(static_cast<size_t>(hc_partial_doubles(n, D)) * 8);
    STATUS_ASSERT(hc_mixer_partials(dx.get<float>() + t0 * HD, w, kHcMix, n, D, part.get<double>(), stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<double> got = download<double>(part, static_cast<size_t>(hc_partial_doubles(n, D)));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + hc_partial_doubles(t0, D)));
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

namespace dsv4::cuda::testing {
namespace {

// hc_post_collapse (one clustered launch per token) against the CPU: X' against cpu::hc_post (and
// bit for bit against hc_post: the same operations), the collapse of X' as in PreMatchesCpu /
// HeadMatchesCpu (the comb logits projected by hc_comb). The mixing coefficients are read and
// replaced in one buffer, as in the forward; the head leaves them alone. D = 4096 is the model's (a cluster of 16 blocks, above the
// portable 8), 2304 a cluster of 9, 300 and 96 end in a partial block.
TEST(CudaHc, PostCollapseMatchesCpu) {
  struct Case {
    int T;
    int64_t D;
    gguf::TensorType type;
    bool head;
    int parts;
  };
  constexpr auto F16 = gguf::TensorType::F16, F32 = gguf::TensorType::F32;
  for (const Case& c : {Case{1, 4096, F16, false, 6}, Case{1, 4096, F16, true, 6}, Case{1, 4096, F32, false, 1},
                        Case{3, 300, F32, false, 6}, Case{2, 300, F16, true, 1}, Case{1, 2304, F16, false, 1},
                        Case{2, 96, F32, true, 6}, Case{1, 300, F32, false, 9}}) {
    const uint64_t seed = fresh_seed();
    SCOPED_TRACE(::testing::Message() << "T=" << c.T << " D=" << c.D << " head=" << c.head << " parts=" << c.parts
                                      << " seed=" << seed);
    std::mt19937_64 rng(seed);
    const int T = c.T, M = c.head ? 4 : kHcMix;
    const int64_t D = c.D, HD = 4 * D;
    const std::vector<float> x = normal_vector(static_cast<size_t>(T * HD), rng);
    const std::vector<float> f = normal_vector(static_cast<size_t>(T * c.parts * D), rng);
    const std::vector<float> extra = normal_vector(static_cast<size_t>(T * D), rng);
    const std::vector<float> mix = normal_vector(static_cast<size_t>(T * kHcMixSize), rng, 0.5f, 0.3f);
    const SmallMatrix fn = make_matrix(c.type, M, HD, rng);
    const std::vector<float> scale = normal_vector(c.head ? 1 : 3, rng, 1.0f, 0.2f);
    const std::vector<float> base = normal_vector(static_cast<size_t>(M), rng, 0.0f, 0.5f);
    const std::vector<float> norm = normal_vector(static_cast<size_t>(D), rng, 1.0f, 0.1f);
    TestStream stream;
    DeviceBuffer dx = upload(x), df = upload(f), de = upload(extra), dmix = upload(mix), dfn = upload(fn.bytes);
    DeviceBuffer ds = upload(scale), db = upload(base), dn = upload(norm);
    DeviceBuffer next(static_cast<size_t>(T * HD) * 4), plain(static_cast<size_t>(T * HD) * 4);
    DeviceBuffer out(static_cast<size_t>(T * D) * 4);
    HcPostArgs p;
    p.x = dx.get<float>();
    p.f = df.get<float>();
    p.n_parts = c.parts;
    p.f_extra = c.parts > 1 ? de.get<float>() : nullptr;
    p.mix = dmix.get<float>();
    p.out = plain.get<float>();
    p.T = T;
    p.D = D;
    STATUS_ASSERT(hc_post(p, stream.get()));  // before the fused launch replaces mix
    p.out = next.get<float>();
    HcPreArgs a;
    a.fn.type = c.type;
    a.fn.ne0 = HD;
    a.fn.ne1 = M;
    a.fn.row_bytes = HD * (c.type == F32 ? 4 : 2);
    a.fn.data = dfn.bytes();
    a.scale = ds.get<float>();
    a.base = db.get<float>();
    a.norm = dn.get<float>();
    a.mix = c.head ? nullptr : dmix.get<float>();
    a.out = out.get<float>();
    a.T = T;
    a.D = D;
    STATUS_ASSERT(hc_post_collapse(p, a, c.head, stream.get()));
    if (!c.head) {
      STATUS_ASSERT(hc_comb(a.mix, T, a.hc_eps, a.sinkhorn_iters, stream.get()));
    }
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> got_x = download<float>(next, static_cast<size_t>(T * HD));
    const std::vector<float> got_out = download<float>(out, static_cast<size_t>(T * D));
    const std::vector<float> got_mix = download<float>(dmix, static_cast<size_t>(T * kHcMixSize));
    EXPECT_EQ(got_x, download<float>(plain, static_cast<size_t>(T * HD)));
    if (c.head) {
      EXPECT_EQ(got_mix, mix);
    }
    for (int t = 0; t < T; ++t) {
      SCOPED_TRACE(::testing::Message() << "token " << t);
      std::vector<float> ft(f.begin() + t * c.parts * D, f.begin() + t * c.parts * D + D);
      for (int i = 1; i < c.parts; ++i) {
        for (int64_t d = 0; d < D; ++d) ft[static_cast<size_t>(d)] += f[static_cast<size_t>((t * c.parts + i) * D + d)];
      }
      if (c.parts > 1) {
        for (int64_t d = 0; d < D; ++d) ft[static_cast<size_t>(d)] += extra[static_cast<size_t>(t * D + d)];
      }
      std::vector<float> want(static_cast<size_t>(HD));
      cpu::hc_post(x.data() + t * HD, ft.data(), mix.data() + t * kHcMixSize, 4, D, want.data());
      EXPECT_LE(max_rel(got_x.data() + t * HD, want.data(), want.size(), 1e-3), 1e-6);
      expect_collapse_matches_cpu(want.data(), D, fn, scale, base, norm, c.head, got_out.data() + t * D,
                                  got_mix.data() + t * kHcMixSize);
    }
  }
}

// The fused launch refuses what one cluster cannot hold, and a collapse of another shape.
TEST(CudaHc, PostCollapseRejectsWhatOneClusterCannotHold) {
  HcPostArgs p;
  p.T = 1;
  p.D = kHcPostCollapseMaxDims + 256;
  HcPreArgs a;
  a.T = 1;
  a.D = p.D;
  EXPECT_FALSE(hc_post_collapse(p, a, false, nullptr).ok());
  p.D = 512;
  a.D = 256;
  EXPECT_FALSE(hc_post_collapse(p, a, false, nullptr).ok());
}

}  // namespace
}  // namespace dsv4::cuda::testing

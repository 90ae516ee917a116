// cuda/attention.h against a plain double-precision reference of MODEL.md §7.5-7.10 written from
// the equations (sink softmax over the raw window and the visible or selected compressed rows,
// inverse RoPE of the output), on fresh random inputs: ratio 0, ratio 4 before and after the
// indexer's selection becomes active, ratio 128, chunks that straddle the ring and sub-chunk
// offsets; then store_raw_rows, and the ring store of one-token launches (decode). Tolerance: f32
// accumulation against double, 1e-5 relative L2; ring stores exact.
#include "cuda/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cpu/rope.h"
#include "cuda/device_util.h"

namespace dsv4::cuda::testing {
namespace {

struct Case {
  int ratio;
  int pos0;
  int T;
  int t0;  // launch's first chunk token
  int window = 32;
  int extra_splits = 0;  // scratch sized for a longer context than the launch's rows
};

void run(const Case& c, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "ratio " << c.ratio << " pos0 " << c.pos0 << " T " << c.T << " t0 " << c.t0
                                    << " window " << c.window << " extra splits " << c.extra_splits
                                    << " seed " << seed);
  std::mt19937_64 rng(seed);
  const int H = 16, hd = 128, n_rot = 64, W = c.window, top_k = 8;
  const int chunk = c.t0 + c.T;  // the chunk's tokens; this launch covers [t0, t0+T)
  const int last = c.pos0 + chunk;
  const int n_comp = c.ratio ? last / c.ratio : 0;
  const std::vector<float> q = normal_vector(static_cast<size_t>(c.T * H * hd), rng, 0.0f, 0.5f);
  const std::vector<float> kv = normal_vector(static_cast<size_t>(chunk * hd), rng);
  const std::vector<float> ring = normal_vector(static_cast<size_t>(W * hd), rng);
  const std::vector<float> comp = normal_vector(static_cast<size_t>(std::max(1, n_comp) * hd), rng);
  const std::vector<float> sinks = normal_vector(H, rng, 1.0f, 1.0f);
  std::vector<int32_t> selected(static_cast<size_t>(chunk * top_k));
  for (int t = 0; t < chunk; ++t) {
    const int n_vis = (c.pos0 + t + 1) / 4;
    // A random ascending subset of the eligible rows.
    std::vector<int32_t> all(static_cast<size_t>(std::max(n_vis, top_k)));
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<int32_t> pick(all.begin(), all.begin() + top_k);
    std::sort(pick.begin(), pick.end());
    for (int i = 0; i < top_k; ++i) selected[static_cast<size_t>(t * top_k + i)] = n_vis > top_k ? pick[static_cast<size_t>(i)] : 0;
  }
  const cpu::YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> omega = cpu::rope_frequencies(n_rot, 160000.0f, &yarn);

  int64_t max_rows = W + (c.ratio == 4 ? top_k : (c.ratio ? n_comp : 0));
  const int splits = attention_splits(max_rows) + c.extra_splits;
  TestStream stream;
  DeviceBuffer dq = upload(q), dkv = upload(kv), dring = upload(ring), dcomp = upload(comp), dsinks = upload(sinks);
  DeviceBuffer dsel = upload(selected), dom = upload(omega), dpos = upload(std::vector<int>{c.pos0});
  // NaN scratch: a split the kernels do not write must not be read either.
  DeviceBuffer part_o = upload(std::vector<float>(static_cast<size_t>(c.T * H * splits * hd), NAN));
  DeviceBuffer part_ml = upload(std::vector<float>(static_cast<size_t>(c.T * H * splits * 2), NAN));
  DeviceBuffer out(static_cast<size_t>(c.T * H * hd) * 4);
  AttentionArgs a;
  a.q = dq.get<float>();
  a.kv_chunk = dkv.get<float>();
  a.ring = dring.get<float>();
  a.comp = dcomp.get<float>();
  a.selected = dsel.get<int32_t>();
  a.sinks = dsinks.get<float>();
  a.omega = dom.get<float>();
  a.pos0 = dpos.get<int>();
  a.t0 = c.t0;
  a.part_o = part_o.get<float>();
  a.part_ml = part_ml.get<float>();
  a.out = out.get<float>();
  a.T = c.T;
  a.H = H;
  a.hd = hd;
  a.n_rot = n_rot;
  a.window = W;
  a.ratio = c.ratio;
  a.top_k = top_k;
  a.splits = splits;
  // One-token launches (decode) store their row into the ring themselves.
  const bool stores = c.T == 1 && c.t0 == 0;
  if (stores) a.store_ring = dring.get<float>();
  STATUS_ASSERT(attention(a, stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<float> got = download<float>(out, static_cast<size_t>(c.T * H * hd));
  std::vector<float> ring_after = ring;
  if (stores) std::copy_n(kv.begin(), hd, ring_after.begin() + (c.pos0 % W) * hd);
  EXPECT_EQ(download<float>(dring, ring.size()), ring_after);

  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int t = 0; t < c.T; ++t) {
    const int ct = c.t0 + t, p = c.pos0 + ct;
    std::vector<const float*> rows;
    for (int pos = std::max(0, p - W + 1); pos <= p; ++pos) {
      rows.push_back(pos < c.pos0 ? ring.data() + (pos % W) * hd : kv.data() + (pos - c.pos0) * hd);
    }
    if (c.ratio == 4) {
      const int n_vis = (p + 1) / 4;
      if (n_vis > top_k) {
        for (int i = 0; i < top_k; ++i) rows.push_back(comp.data() + selected[static_cast<size_t>(ct * top_k + i)] * hd);
      } else {
        for (int i = 0; i < n_vis; ++i) rows.push_back(comp.data() + i * hd);
      }
    } else if (c.ratio) {
      for (int i = 0; i < (p + 1) / c.ratio; ++i) rows.push_back(comp.data() + i * hd);
    }
    const cpu::RopeAngles ang = cpu::rope_angles(omega, p);
    for (int h = 0; h < H; ++h) {
      const float* qh = q.data() + (t * H + h) * hd;
      std::vector<double> s(rows.size());
      double m = sinks[static_cast<size_t>(h)];
      for (size_t i = 0; i < rows.size(); ++i) {
        double d = 0;
        for (int j = 0; j < hd; ++j) d += double(qh[j]) * rows[i][j];
        s[i] = d * scale;
        m = std::max(m, s[i]);
      }
      double den = std::exp(sinks[static_cast<size_t>(h)] - m);
      std::vector<double> o(hd, 0.0);
      for (size_t i = 0; i < rows.size(); ++i) {
        const double e = std::exp(s[i] - m);
        den += e;
        for (int j = 0; j < hd; ++j) o[static_cast<size_t>(j)] += e * rows[i][j];
      }
      std::vector<float> want(hd);
      for (int j = 0; j < hd; ++j) want[static_cast<size_t>(j)] = static_cast<float>(o[static_cast<size_t>(j)] / den);
      cpu::rope_rotate_inverse(want.data(), hd, ang);
      EXPECT_LE(rel_l2(got.data() + (t * H + h) * hd, want.data(), hd), 1e-5) << "token " << t << " head " << h;
    }
  }
}

TEST(CudaAttention, MatchesPlainReference) {
  const std::vector<Case> cases = {
      {0, 0, 5, 0},     {0, 100, 3, 0},   {0, 40, 9, 16},  // window only; a chunk straddling the ring
      {4, 0, 40, 0},    {4, 30, 20, 0},   {4, 60, 4, 16},  // compressed rows, then the selection
      {128, 200, 6, 0}, {128, 500, 2, 3},                  // all compressed rows
      {2, 100, 10, 0},                                     // more rows than one split
      {0, 100, 1, 0},   {4, 60, 1, 0},    {128, 500, 1, 0},  // decode: the ring store in the launch
      // A window that is no multiple of the 32-row split: raw and selected rows share a split
      // (the raw ones are named before the kernel's griddepcontrol.wait, the selected after).
      {4, 60, 1, 0, 20}, {4, 60, 3, 0, 44},
      // Splits past the token's rows (a session sized for a longer context): the combine must not
      // read them.
      {0, 3, 1, 0, 32, 5}, {128, 500, 2, 3, 32, 40}, {4, 60, 3, 0, 44, 17},
      // 34 live splits: the combine's partials in three sets of registers (16, 16, 2).
      {2, 2100, 2, 0}, {2, 2100, 1, 0, 32, 3},
  };
  for (const Case& c : cases) run(c, fresh_seed());
}

TEST(CudaAttention, RingStoreOnlyForOneTokenLaunches) {
  AttentionArgs a;
  float ring = 0;
  a.T = 2;
  a.H = 1;
  a.splits = 1;
  a.store_ring = &ring;
  EXPECT_FALSE(attention(a, nullptr).ok());
}

TEST(CudaAttention, RawRowsEnterTheRingLast) {
  const int W = 8, hd = 64;
  for (int T : {3, 8, 13}) {
    for (int pos0 : {0, 5, 21}) {
      std::mt19937_64 rng(fresh_seed());
      const std::vector<float> kv = normal_vector(static_cast<size_t>(T * hd), rng);
      std::vector<float> ring = normal_vector(static_cast<size_t>(W * hd), rng);
      TestStream stream;
      DeviceBuffer dkv = upload(kv), dring = upload(ring), dpos = upload(std::vector<int>{pos0});
      STATUS_ASSERT(store_raw_rows(dkv.get<float>(), dring.get<float>(), dpos.get<int>(), T, W, hd, stream.get()));
      CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
      for (int t = std::max(0, T - W); t < T; ++t) {
        std::copy_n(kv.begin() + t * hd, hd, ring.begin() + ((pos0 + t) % W) * hd);
      }
      EXPECT_EQ(download<float>(dring, ring.size()), ring) << "T " << T << " pos0 " << pos0;
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

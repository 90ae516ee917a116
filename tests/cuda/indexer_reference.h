// A plain reference of MODEL.md §7.7 for the indexer tests (indexer_test.cc, prefill_indexer_test.cc):
// random inputs of a geometry, the queries prepared on the CPU (RoPE, then Hadamard and FP4 in
// official mode), scores Σ_h (w_h/sqrt(idh·IH))·max(0, q_h·K_I[c]) in double, the top-k by score
// with ties to the lower index.
//
// The device sums in f32 in another order (~1e-6 relative), so rows whose scores are that close
// may swap across the top-k boundary: the selections must agree wherever the reference's k-th and
// (k+1)-th scores are more than 1e-4 apart (relative); elsewhere the device's k rows (ascending,
// distinct) must hold every row the reference scores more than 1e-4 above its k-th score and no row
// more than 1e-4 below it. (Among tens of thousands of rows the k-th and (k+1)-th scores are
// seldom that far apart.) Tokens that do not rank must leave their row alone.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "cpu/rope.h"
#include "cpu/sim.h"
#include "cuda/device_util.h"
#include "cuda/indexer.h"

namespace dsv4::cuda::testing {

struct IndexerCase {
  int IH, idh, top_k, pos0, T, t0;
  bool sim;
  bool rows_sim = true;  // official mode: rows FP4-simulated (Hadamard then FP4) as the compressor emits them
};

inline std::string describe(const IndexerCase& c, uint64_t seed) {
  std::ostringstream o;
  o << "IH " << c.IH << " idh " << c.idh << " top_k " << c.top_k << " pos0 " << c.pos0 << " T " << c.T << " t0 " << c.t0
    << " sim " << c.sim << " rows_sim " << c.rows_sim << " seed " << seed;
  return o.str();
}

// What a selection launch is run on: host inputs and their device copies, `selected` poisoned, a
// zeroed top-k scratch (IndexerArgs::topk_scratch, not set in args).
struct IndexerInputs {
  static constexpr int32_t kPoison = -7;
  IndexerCase c;
  int n_rot = 0;
  int64_t cap = 0;  // score rows; slack past the last token's visible rows: the kernels must not write there
  std::vector<float> q, w, rows, omega;
  DeviceBuffer dq, dw, drows, dom, dpos, scores, sel, topk_scratch;
  IndexerArgs args;

  IndexerInputs(const IndexerCase& cs, uint64_t seed) : c(cs) {
    std::mt19937_64 rng(seed);
    n_rot = std::min(64, c.idh);
    cap = (c.pos0 + c.t0 + c.T) / 4 + 3;
    q = normal_vector(static_cast<size_t>(c.T) * c.IH * c.idh, rng);
    w = normal_vector(static_cast<size_t>(c.T) * c.IH, rng);
    rows = normal_vector(static_cast<size_t>(cap) * c.idh, rng);
    if (c.sim && c.rows_sim) {
      for (int64_t r = 0; r < cap; ++r) {
        cpu::hadamard(rows.data() + r * c.idh, c.idh);
        cpu::fp4_sim(rows.data() + r * c.idh, c.idh);
      }
    }
    const cpu::YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
    omega = cpu::rope_frequencies(n_rot, 160000.0f, &yarn);
    dq = upload(q);
    dw = upload(w);
    drows = upload(rows);
    dom = upload(omega);
    dpos = upload(std::vector<int>{c.pos0});
    scores = DeviceBuffer(static_cast<size_t>(c.T * cap) * 4);
    sel = upload(std::vector<int32_t>(static_cast<size_t>(c.T) * c.top_k, kPoison));
    topk_scratch = upload(std::vector<uint32_t>(static_cast<size_t>(c.T) * kIndexerTopkScratchWords, 0u));
    args.q = dq.get<float>();
    args.w = dw.get<float>();
    args.rows = drows.get<float>();
    args.scores = scores.get<float>();
    args.selected = sel.get<int32_t>();
    args.omega = dom.get<float>();
    args.pos0 = dpos.get<int>();
    args.t0 = c.t0;
    args.T = c.T;
    args.IH = c.IH;
    args.idh = c.idh;
    args.n_rot = n_rot;
    args.top_k = c.top_k;
    args.score_cap = cap;
    args.sim = c.sim;
  }

  // The inputs as they were before a launch (the queries are prepared in place), `selected` poisoned.
  void restore() const {
    ASSERT_TRUE(upload(dq, q));
    ASSERT_TRUE(upload(sel, std::vector<int32_t>(static_cast<size_t>(c.T) * c.top_k, kPoison)));
  }

  // The device's selection (after the launch's stream is synchronised) against the reference.
  void expect_selection_matches_reference() const {
    const int IH = c.IH, idh = c.idh, k = c.top_k;
    const std::vector<int32_t> got = download<int32_t>(sel, static_cast<size_t>(c.T) * k);
    const float w_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(idh * IH)));
    int scored = 0, decisive = 0;
    for (int t = 0; t < c.T; ++t) {
      const int64_t p = c.pos0 + c.t0 + t, n_vis = (p + 1) / 4;
      const std::vector<int32_t> row(got.begin() + static_cast<int64_t>(t) * k,
                                     got.begin() + static_cast<int64_t>(t + 1) * k);
      if (n_vis <= k) {
        EXPECT_EQ(row, std::vector<int32_t>(static_cast<size_t>(k), kPoison)) << "token " << t << " needs no selection";
        continue;
      }
      ++scored;
      std::vector<float> qt(q.begin() + static_cast<int64_t>(t) * IH * idh, q.begin() + static_cast<int64_t>(t + 1) * IH * idh);
      const cpu::RopeAngles ang = cpu::rope_angles(omega, p);
      for (int h = 0; h < IH; ++h) {
        float* qh = qt.data() + static_cast<int64_t>(h) * idh;
        cpu::rope_rotate(qh, idh, ang);
        if (c.sim) {
          cpu::hadamard(qh, idh);
          cpu::fp4_sim(qh, idh);
        }
      }
      std::vector<float> s(static_cast<size_t>(n_vis));
      for (int64_t r = 0; r < n_vis; ++r) {
        double acc = 0;
        for (int h = 0; h < IH; ++h) {
          double d = 0;
          for (int j = 0; j < idh; ++j) d += double(qt[static_cast<size_t>(h * idh + j)]) * rows[static_cast<size_t>(r * idh + j)];
          acc += double(w[static_cast<size_t>(t * IH + h)] * w_scale) * std::max(0.0, d);
        }
        s[static_cast<size_t>(r)] = static_cast<float>(acc);
      }
      std::vector<int32_t> want = cpu::top_k_desc(s, k);
      std::sort(want.begin(), want.end());
      std::vector<float> sorted = s;
      std::nth_element(sorted.begin(), sorted.begin() + k, sorted.end(), std::greater<float>());
      std::sort(sorted.begin(), sorted.begin() + k + 1, std::greater<float>());
      const float kth = sorted[static_cast<size_t>(k - 1)], next = sorted[static_cast<size_t>(k)];
      const float tol = 1e-4f * (std::fabs(kth) + 1e-6f);
      if (kth - next > tol) {
        ++decisive;
        EXPECT_EQ(row, want) << "token " << t;
      } else {
        EXPECT_TRUE(std::is_sorted(row.begin(), row.end()) && std::adjacent_find(row.begin(), row.end()) == row.end());
        for (int32_t r : row) {
          ASSERT_TRUE(r >= 0 && r < n_vis) << "token " << t << " row " << r;
          EXPECT_GE(s[static_cast<size_t>(r)], kth - tol) << "token " << t << " row " << r;
        }
        int64_t missed = 0;
        for (int64_t r = 0; r < n_vis; ++r) {
          missed += s[static_cast<size_t>(r)] > kth + tol && !std::binary_search(row.begin(), row.end(), r);
        }
        EXPECT_EQ(missed, 0) << "token " << t << ": rows scored clearly above the k-th left out";
      }
    }
    EXPECT_GT(scored, 0);
    // Chunks of many ranking tokens: most tokens decide their selection exactly.
    if (scored >= 4) {
      EXPECT_GT(decisive, scored / 2);
    }
  }
};

}  // namespace dsv4::cuda::testing

// cuda/compressor.h against cpu::compress (cpu/blocks.h) on the tiny model's compressors (ratio 4
// with overlap and the indexer compressor, ratio 16 without), fed the same fresh random inputs in
// chunks of uneven sizes, then token by token: the emitted rows and the frontiers must agree after
// every chunk. Windows without overlap also run the emit's one-block form beside the split one:
// the same bits.
//
// Tolerances: the projections are f32 dots in different orders (1e-6 of the sum of |terms|);
// pooling, norm and RoPE repeat the CPU's operations. So rows and frontiers agree to 1e-5 of the
// values' scale, except that an FP8/FP4-simulated element may land on the other side of a rounding
// midpoint (counted; a few at most, each within one step of the format).
#include "cuda/compressor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/blocks.h"
#include "cpu/rope.h"
#include "cpu/test_models.h"
#include "cuda/device_model.h"
#include "cuda/device_util.h"
#include "cuda/forward.h"

namespace dsv4::cuda::testing {
namespace {

struct Mismatch {
  int loose = 0;     // beyond 1e-5 relative
  bool wild = false;  // beyond one step of the simulated format
};

// Rounding differences are relative to the values' scale (an element that cancels to near zero
// keeps the absolute error of its inputs): 1e-5 of |w| + a tenth of the largest |w|. A
// difference beyond wild_rel·|w| + wild_abs is more than a rounding flip.
Mismatch compare(const float* got, const float* want, size_t n, double wild_rel, double wild_abs) {
  Mismatch m;
  double amax = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isfinite(want[i])) amax = std::max(amax, std::fabs(double(want[i])));
  }
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], w = want[i];
    if (std::isinf(w) && g == w) continue;
    const double diff = std::fabs(g - w);
    if (diff <= 1e-5 * (std::fabs(w) + 0.1 * amax)) continue;
    ++m.loose;
    if (!(diff <= wild_rel * std::fabs(w) + wild_abs)) m.wild = true;
  }
  return m;
}

void run_layer(const model::Model& host, const DeviceModel& dev, int64_t layer, bool indexer, bool official,
               uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "layer " << layer << (indexer ? " indexer" : " attention")
                                    << (official ? " official" : " plain") << " seed " << seed);
  const model::Config& c = host.config;
  const int64_t r = c.ratio(layer), D = c.n_embd;
  const int64_t d = indexer ? c.index_head_dim : c.head_dim;
  const int64_t cw = r == 4 ? 2 : 1, cd = cw * d, slots = cw * r;
  // Then one-token chunks (the decode step's launches) across window ends of ratio 4 and 16.
  std::vector<int64_t> chunks = {5, 1, 13, 3, 1, 8, 30, 2, 1, 15};
  chunks.resize(chunks.size() + 20, 1);
  int64_t N = 0;
  for (int64_t n : chunks) N += n;
  std::mt19937_64 rng(seed);
  const std::vector<float> x = normal_vector(static_cast<size_t>(N * D), rng);
  const std::vector<float> omega = cpu::layer_rope_frequencies(c, layer);
  const cpu::SimOptions sim = official ? cpu::SimOptions::official() : cpu::SimOptions::plain();
  cpu::State st = cpu::State::create(c, N).value();

  const DeviceLayer& L = dev.layers[static_cast<size_t>(layer)];
  const PairedTensor& w = indexer ? L.index_comp : L.comp;
  TestStream stream;
  DeviceBuffer dx = upload(x), dom = upload(omega);
  DeviceBuffer proj(static_cast<size_t>(N * 2 * cd) * 4), proj2(static_cast<size_t>(N * cd) * 4);
  DeviceBuffer zeros = upload(std::vector<int32_t>(static_cast<size_t>(N), 0));
  std::vector<float> init_gate(static_cast<size_t>(slots * cd), -INFINITY);
  DeviceBuffer front_kv = upload(std::vector<float>(static_cast<size_t>(slots * cd), 0.0f));
  DeviceBuffer front_gate = upload(init_gate);
  DeviceBuffer rows(static_cast<size_t>((N / r + 1) * d) * 4);
  DeviceBuffer dpos(4);
  // Windows without overlap are pooled by several blocks a window (the forward pass's form);
  // beside them the same chunks go through the one-block form, with its own frontier and rows,
  // which must give the same bits.
  const bool split = r != 4;
  int64_t most_windows = 0;
  for (int64_t n : chunks) most_windows = std::max(most_windows, n / r + 1);
  DeviceBuffer pooled(static_cast<size_t>(most_windows * d) * 4);
  DeviceBuffer counters = upload(std::vector<uint32_t>(static_cast<size_t>(most_windows), 0));
  DeviceBuffer one_front_kv = upload(std::vector<float>(static_cast<size_t>(slots * cd), 0.0f));
  DeviceBuffer one_front_gate = upload(init_gate);
  DeviceBuffer one_rows(static_cast<size_t>((N / r + 1) * d) * 4);

  int64_t pos0 = 0;
  int worst_loose = 0;
  for (int64_t n : chunks) {
    cpu::Chunk ch;
    ch.pos0 = pos0;
    ch.n_tok = n;
    ch.sim = sim;
    cpu::compress(host, layer, st, ch, indexer ? cpu::CompressorKind::kIndexer : cpu::CompressorKind::kAttention,
                  omega, x.data() + pos0 * D);

    const int pos = static_cast<int>(pos0);
    CUDA_ASSERT(cudaMemcpy(dpos.get(), &pos, 4, cudaMemcpyHostToDevice));
    const float* xa = dx.get<float>() + pos0 * D;
    CompressorArgs a;
    if (w.fused()) {
      STATUS_ASSERT(project(w.both, xa, static_cast<int>(n), proj.get<float>(), zeros.get<int32_t>(), stream.get()));
      a.kv = proj.get<float>();
      a.gate = proj.get<float>() + cd;
      a.proj_stride = 2 * cd;
    } else {
      STATUS_ASSERT(project(w.a, xa, static_cast<int>(n), proj.get<float>(), zeros.get<int32_t>(), stream.get()));
      STATUS_ASSERT(project(w.b, xa, static_cast<int>(n), proj2.get<float>(), zeros.get<int32_t>(), stream.get()));
      a.kv = proj.get<float>();
      a.gate = proj2.get<float>();
      a.proj_stride = cd;
    }
    a.ape = indexer ? L.index_comp_ape : L.comp_ape;
    a.front_kv = front_kv.get<float>();
    a.front_gate = front_gate.get<float>();
    a.norm = indexer ? L.index_comp_norm : L.comp_norm;
    a.rows = rows.get<float>();
    a.omega = dom.get<float>();
    a.pos0 = dpos.get<int>();
    a.T = static_cast<int>(n);
    a.ratio = static_cast<int>(r);
    a.d = static_cast<int>(d);
    a.n_rot = static_cast<int>(c.n_rot);
    a.indexer = indexer;
    a.sim = indexer ? sim.fp4_indexer : sim.fp8_kv;
    if (split) {
      a.pooled = pooled.get<float>();
      a.counters = counters.get<unsigned>();
    }
    STATUS_ASSERT(compressor_chunk(a, stream.get()));
    if (split) {
      CompressorArgs one = a;
      one.front_kv = one_front_kv.get<float>();
      one.front_gate = one_front_gate.get<float>();
      one.rows = one_rows.get<float>();
      one.pooled = nullptr;
      one.counters = nullptr;
      STATUS_ASSERT(compressor_chunk(one, stream.get()));
    }
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    pos0 += n;

    const cpu::LayerState& ls = st.layer(layer);
    const cpu::Frontier& f = indexer ? ls.index_front : ls.comp_front;
    const int64_t n_rows = indexer ? ls.n_index : ls.n_comp;
    ASSERT_EQ(n_rows, pos0 / r);
    const std::vector<float>& want_rows = indexer ? ls.index : ls.comp;
    const std::vector<float> got_rows = download<float>(rows, static_cast<size_t>(n_rows * d));
    // One FP8 step is at most 1/8 of the value; one FP4 step at most a third of the row's largest.
    double amax = 0;
    for (size_t i = 0; i < got_rows.size(); ++i) amax = std::max(amax, std::fabs(double(want_rows[i])));
    const Mismatch mr = indexer ? compare(got_rows.data(), want_rows.data(), got_rows.size(), 0.0, 0.4 * amax + 1e-3)
                                : compare(got_rows.data(), want_rows.data(), got_rows.size(), 0.15, 1e-3);
    EXPECT_FALSE(mr.wild) << "rows after position " << pos0;
    if (split) {
      const std::vector<float> one_block = download<float>(one_rows, got_rows.size());
      EXPECT_EQ(std::memcmp(one_block.data(), got_rows.data(), got_rows.size() * 4), 0)
          << "rows pooled by several blocks a window against one block, after position " << pos0;
      EXPECT_EQ(download<uint32_t>(counters, static_cast<size_t>(most_windows)),
                std::vector<uint32_t>(static_cast<size_t>(most_windows), 0))
          << "the window counters after position " << pos0;
    }
    worst_loose = std::max(worst_loose, mr.loose);
    const std::vector<float> got_kv = download<float>(front_kv, f.kv.size());
    const std::vector<float> got_gate = download<float>(front_gate, f.gate.size());
    const Mismatch mk = compare(got_kv.data(), f.kv.data(), f.kv.size(), 0.0, 0.0);
    const Mismatch mg = compare(got_gate.data(), f.gate.data(), f.gate.size(), 0.0, 0.0);
    EXPECT_EQ(mk.loose, 0) << "frontier kv after position " << pos0;
    EXPECT_EQ(mg.loose, 0) << "frontier gate after position " << pos0;
  }
  // Simulation flips are rare: a handful over all rows.
  EXPECT_LE(worst_loose, official ? 4 : 0);
}

TEST(CudaCompressor, MatchesCpuOverUnevenChunks) {
  const model::Model& host = cpu::testing::synthetic_model("tiny");
  Result<std::unique_ptr<DeviceModel>> dev = upload_model(host);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  for (bool official : {false, true}) {
    for (int64_t l = 0; l < host.config.n_layer; ++l) {
      if (host.config.ratio(l) == 0) continue;
      run_layer(host, **dev, l, false, official, fresh_seed());
      if (host.config.ratio(l) == 4) run_layer(host, **dev, l, true, official, fresh_seed());
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

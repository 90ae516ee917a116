// The whole model on the GPU (cuda/session.h) against the CPU reference (cpu/forward.h) and the
// committed transformers fixtures, in both modes, for the tiny and small presets with F32 weights
// and with the published type mix (Q8_0 projections, IQ2_XXS/Q2_K experts, F16 small matrices).
// Sequences are long enough for every layer kind to compress and for the indexer's top-k to
// select (tiny: top-k 8 from position 35; small: top-k 16 from position 67). These run the default
// prefill (PrefillMath::kTensorCoreSplit: tensor-core GEMMs with f32-level products);
// MatchesCpuInBothModes also the f32 matvec prefill (kMatvecF32). The f16-product prefill misses
// the bar and has its own regression test at the end.
//
// Bar (the issue's): per-position relative L2 of the logits <= 1e-3, and the same argmax wherever
// the reference's top-2 gap exceeds 1e-2. Official mode on the small preset's real head geometry
// (448 FP8-simulated dims per row, window 128) is judged like the CPU's own fixture test: two
// correct implementations whose f32 results differ by ~1e-6 round an element across an e4m3
// midpoint every few hundred positions, and that element stays in the window (see
// tests/cpu/reference_fixture_test.cc). There the bar is the fixture test's: median <= 5e-3 and
// >= 99 % of the argmaxes. Measured (H200, 2026-11-26, the Q8_0 row-tile matvec whose f32 sums run
// in another order than the CPU's, 1.2-1.6x the CPU's own distance from the exact dot): median
// 1.71e-3 on small/mixed/official while every other case is <= 4.5e-5 worst: the flips, not the
// arithmetic, set the median.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/forward.h"
#include "cpu/test_models.h"
#include "cuda/device_util.h"
#include "cuda/reference_fixture.h"
#include "cuda/session.h"
#include "model/synthetic.h"
#include "util/sha256.h"

namespace dsv4::cuda::testing {
namespace {

using cpu::testing::synthetic_model;
using cpu::testing::test_tokens;

struct Comparison {
  std::vector<double> rel_l2;
  int64_t argmax_checked = 0, argmax_mismatches = 0;
  double worst() const { return *std::max_element(rel_l2.begin(), rel_l2.end()); }
  double median() const {
    std::vector<double> v = rel_l2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  }
};

Comparison compare(const std::vector<float>& got, const std::vector<float>& ref, int64_t V, double gap = 1e-2) {
  Comparison c;
  const int64_t n = static_cast<int64_t>(ref.size()) / V;
  for (int64_t p = 0; p < n; ++p) {
    const float* r = ref.data() + p * V;
    const float* g = got.data() + p * V;
    c.rel_l2.push_back(rel_l2(g, r, static_cast<size_t>(V)));
    int64_t best = 0, second = -1;
    for (int64_t v = 1; v < V; ++v) {
      if (r[v] > r[best]) {
        second = best;
        best = v;
      } else if (second < 0 || r[v] > r[second]) {
        second = v;
      }
    }
    if (r[best] - r[second] > gap) {
      ++c.argmax_checked;
      c.argmax_mismatches += (std::max_element(g, g + V) - g) != best;
    }
  }
  return c;
}

std::vector<float> gpu_logits(const model::Model& m, const std::vector<int32_t>& tokens, cpu::SimOptions mode,
                              int max_chunk = DeviceSession::kDefaultMaxChunk,
                              PrefillMath prefill = PrefillMath::kTensorCoreSplit, int64_t capacity = 0) {
  Result<std::unique_ptr<DeviceModel>> dev = upload_model(m);
  EXPECT_TRUE(dev.ok()) << dev.error().message;
  if (!dev.ok()) return {};
  std::shared_ptr<const DeviceModel> shared = std::move(dev).value();
  auto s = DeviceSession::create(shared, std::max(capacity, static_cast<int64_t>(tokens.size())), mode, max_chunk,
                                 prefill);
  EXPECT_TRUE(s.ok()) << s.error().message;
  std::vector<float> logits(tokens.size() * static_cast<size_t>(m.config.n_vocab));
  const Status st = (*s)->forward(tokens, logits.data());
  EXPECT_TRUE(st.ok()) << st.message();
  return logits;
}

struct ModelCase {
  const char* preset;
  model::WeightTypes types;
  int64_t n_tokens;
};

TEST(CudaForward, MatchesCpuInBothModes) {
  for (const ModelCase& mc : {ModelCase{"tiny", model::WeightTypes::kF32, 180}, ModelCase{"tiny", model::WeightTypes::kMixed, 180},
                              ModelCase{"small", model::WeightTypes::kF32, 200},
                              ModelCase{"small", model::WeightTypes::kMixed, 200}}) {
    const model::Model& m = synthetic_model(mc.preset, mc.types);
    const std::vector<int32_t> tokens = test_tokens(mc.n_tokens, m.config.n_vocab, 11);
    for (bool official : {false, true}) {
      const cpu::SimOptions mode = official ? cpu::SimOptions::official() : cpu::SimOptions::plain();
      const std::vector<float> ref = cpu::testing::run_chunked(m, tokens, 64, mode);
      for (const PrefillMath math : {PrefillMath::kTensorCoreSplit, PrefillMath::kMatvecF32}) {
        const char* math_name = math == PrefillMath::kTensorCoreSplit ? "split" : "matvec";
        SCOPED_TRACE(::testing::Message() << mc.preset << (mc.types == model::WeightTypes::kF32 ? " f32" : " mixed")
                                          << (official ? " official " : " plain ") << math_name);
        const std::vector<float> got = gpu_logits(m, tokens, mode, DeviceSession::kDefaultMaxChunk, math);
        ASSERT_EQ(got.size(), ref.size());
        const Comparison c = compare(got, ref, m.config.n_vocab);
        std::printf("%-6s %-6s %-9s %-6s worst rel L2 %.2e median %.2e argmax %lld/%lld mismatches\n", mc.preset,
                    mc.types == model::WeightTypes::kF32 ? "f32" : "mixed", official ? "official" : "plain", math_name, c.worst(),
                    c.median(), static_cast<long long>(c.argmax_mismatches), static_cast<long long>(c.argmax_checked));
        const bool real_geometry_official = official && std::string(mc.preset) == "small";
        if (real_geometry_official) {
          EXPECT_LE(c.median(), 5e-3);
          EXPECT_LE(static_cast<double>(c.argmax_mismatches), 0.01 * static_cast<double>(c.argmax_checked));
        } else {
          EXPECT_LE(c.worst(), 1e-3);
          EXPECT_EQ(c.argmax_mismatches, 0);
        }
        EXPECT_GT(c.argmax_checked, mc.n_tokens / 2);
      }
    }
  }
}

// Chunked prefill and token-by-token decode (the captured graph) on the GPU give the same logits,
// for both prefill maths that meet the bar. With the matvec prefill the projections are decode's
// arithmetic; the attention kernels differ, and so do the hyper-connection mixer sums of chunks of
// 64 tokens or more: summed a token per lane (cuda/hc_chunk.cu), decode's over a block of dims
// (hc.cu), both in f32 then double but in other orders. The split GEMMs compute the projections another way
// (f32-level, another summation order). So in official mode an e4m3 rounding of the KV simulation
// can flip between prefill and decode on either preset and with either math: measured (H100,
// 2026-11-26) tiny/official/split worst 1.05e-4, median 6.6e-7 — one flipped position, while the
// same split prefill against the CPU reference is at worst 1.3e-6 there (MatchesCpuInBothModes);
// 2026-11-27, with the token-per-lane mixer sums taking this test's 32-token chunks too (they now
// go to the dim-per-lane kernels), tiny/official/matvec worst 1.05e-4, median 5.5e-7, no argmax
// change. So tiny/official is held to the whole-model bar (worst <= 1e-3, no
// argmax change) instead of 1e-4, small/official to the flip bar (median <= 1e-3, argmax >= 99 %);
// plain mode keeps worst <= 1e-4 for both maths.
TEST(CudaForward, DecodeStepsMatchChunkedPrefill) {
  for (const char* preset : {"tiny", "small"}) {
    const model::Model& m = synthetic_model(preset, model::WeightTypes::kMixed);
    const int64_t V = m.config.n_vocab, n = 150, prefix = 40;
    const std::vector<int32_t> tokens = test_tokens(n, V, 5);
    for (bool official : {false, true}) {
      const cpu::SimOptions mode = official ? cpu::SimOptions::official() : cpu::SimOptions::plain();
      for (const PrefillMath math : {PrefillMath::kTensorCoreSplit, PrefillMath::kMatvecF32}) {
        const bool split = math == PrefillMath::kTensorCoreSplit;
        SCOPED_TRACE(::testing::Message() << preset << (official ? " official " : " plain ")
                                          << (split ? "split" : "matvec"));
        const std::vector<float> all = gpu_logits(m, tokens, mode, 32, math);
        std::shared_ptr<const DeviceModel> dev = std::move(upload_model(m)).value();
        auto s = std::move(DeviceSession::create(dev, n, mode, DeviceSession::kDefaultMaxChunk, math)).value();
        ASSERT_TRUE(s->forward(std::span(tokens).first(prefix), nullptr).ok());
        std::vector<float> stepped(all.begin(), all.begin() + prefix * V);
        // The last prefill position's logits come from the state, then one graph replay per token.
        std::copy(s->logits().begin(), s->logits().end(), stepped.end() - V);
        for (int64_t p = prefix; p < n; ++p) {
          ASSERT_TRUE(s->forward(std::span(tokens).subspan(static_cast<size_t>(p), 1), nullptr).ok());
          stepped.insert(stepped.end(), s->logits().begin(), s->logits().end());
        }
        const Comparison c = compare(stepped, all, V);
        std::printf("decode vs prefill %-6s %-9s %-6s worst rel L2 %.2e median %.2e argmax %lld/%lld mismatches\n",
                    preset, official ? "official" : "plain", split ? "split" : "matvec", c.worst(), c.median(),
                    static_cast<long long>(c.argmax_mismatches), static_cast<long long>(c.argmax_checked));
        if (official && std::string(preset) == "small") {
          EXPECT_LE(c.median(), 1e-3);
          EXPECT_LE(static_cast<double>(c.argmax_mismatches), 0.01 * static_cast<double>(c.argmax_checked));
        } else if (official) {
          EXPECT_LE(c.worst(), 1e-3);  // the whole-model bar: room for one flipped e4m3 rounding
          EXPECT_EQ(c.argmax_mismatches, 0);
        } else {
          EXPECT_LE(c.worst(), 1e-4);
          EXPECT_EQ(c.argmax_mismatches, 0);
        }
      }
    }
  }
}

// A chunk of at most DeviceSession::kStepChunkMax tokens (without every token's logits) runs as one
// multi-token step on the decode step's kernels (token pairs sharing the Q8_0 weights' decode, the
// tokens' expert slots reading their rows): the same bits as forwarding its tokens one by one, in
// both prefill maths (2 and 4 tokens: pairs; 3: unpaired); a longer chunk still takes the chunk
// path (its logits within the bar of the test above). The tiny model's chunks past position 32
// score the indexer (top_k 8), the small model's do not (16, from 64) and its Q8_0 rows of 256 take
// the row tile's token pairs; both open with a chunk of 2 that does not score.
void expect_short_chunks_as_steps(const model::Model& m) {
  const int64_t V = m.config.n_vocab, prefix = 40, n = prefix + 3 + DeviceSession::kStepChunkMax + 6;
  const std::vector<int32_t> tokens = test_tokens(n, V, 9);
  std::shared_ptr<const DeviceModel> dev = std::move(upload_model(m)).value();
  auto last_logits = [](DeviceSession& s) { return std::vector<float>(s.logits().begin(), s.logits().end()); };
  for (const PrefillMath math : {PrefillMath::kTensorCoreSplit, PrefillMath::kMatvecF32}) {
    SCOPED_TRACE(math == PrefillMath::kTensorCoreSplit ? "split" : "matvec");
    const cpu::SimOptions mode = cpu::SimOptions::official();
    auto chunked = std::move(DeviceSession::create(dev, n, mode, DeviceSession::kDefaultMaxChunk, math)).value();
    auto stepped = std::move(DeviceSession::create(dev, n, mode, DeviceSession::kDefaultMaxChunk, math)).value();
    int64_t p = 0;
    auto expect_same_after = [&](int64_t len) {
      ASSERT_TRUE(chunked->forward(std::span(tokens).subspan(static_cast<size_t>(p), static_cast<size_t>(len)),
                                   nullptr).ok());
      for (int64_t i = 0; i < len; ++i, ++p) {
        ASSERT_TRUE(stepped->forward(std::span(tokens).subspan(static_cast<size_t>(p), 1), nullptr).ok());
      }
      ASSERT_EQ(chunked->n(), p);
      const std::vector<float> a = last_logits(*chunked), b = last_logits(*stepped);
      ASSERT_EQ(a.size(), static_cast<size_t>(V));
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "after " << p << " positions";
    };
    expect_same_after(2);
    if (::testing::Test::HasFatalFailure()) return;
    ASSERT_TRUE(chunked->forward(std::span(tokens).subspan(2, prefix - 2), nullptr).ok());
    ASSERT_TRUE(stepped->forward(std::span(tokens).subspan(2, prefix - 2), nullptr).ok());
    p = prefix;
    for (const int64_t len : {int64_t{3}, int64_t{DeviceSession::kStepChunkMax}}) {
      expect_same_after(len);
      if (::testing::Test::HasFatalFailure()) return;
    }
    // One token past kStepChunkMax: the chunk path, near the steps.
    const int64_t len = DeviceSession::kStepChunkMax + 1;
    ASSERT_TRUE(chunked->forward(std::span(tokens).subspan(static_cast<size_t>(p), static_cast<size_t>(len)),
                                 nullptr).ok());
    for (int64_t i = 0; i < len; ++i, ++p) {
      ASSERT_TRUE(stepped->forward(std::span(tokens).subspan(static_cast<size_t>(p), 1), nullptr).ok());
    }
    const Comparison c = compare(last_logits(*chunked), last_logits(*stepped), V);
    EXPECT_LE(c.worst(), 1e-3);
    EXPECT_EQ(c.argmax_mismatches, 0);
  }
}

TEST(CudaForward, ShortChunksRunAsDecodeSteps) {
  static_assert(DeviceSession::kStepChunkMax == 4, "the chunks of 2, 3 and 4 take the multi-token step");
  for (const char* preset : {"tiny", "small"}) {
    SCOPED_TRACE(preset);
    expect_short_chunks_as_steps(synthetic_model(preset, model::WeightTypes::kMixed));
    if (HasFatalFailure()) return;
  }
}

// The tensor-core prefill (PrefillMath::kTensorCoreF16: every projection of a chunk a GEMM with
// f16 products but the routed experts' Q2_K down projection, which runs on int8 limbs as in split
// mode; the routed experts sorted by expert) against the CPU reference, the published type
// mix. It does not meet the bar above: f16's 2^-11 per product (against f32's 2^-24) moves the
// router and indexer scores enough to flip near-tied top-k choices, and in official mode the
// FP8/FP4 simulations' roundings, each flip changing a position's logits by up to tens of percent
// (measured on an H200, 2026-11-26: plain worst 0.14–0.21, median 1.2e-3–1.9e-3, argmax 0/178 and
// 0/198; official median 1.25e-2–2.8e-2, argmax 8/200–17/178). Bars here are regression bars at
// about three times those medians and mismatch rates: a wrong row, stride, scale or expert order
// costs a median of order 1. Prompts of 180/200 tokens: chunks of 128 and 52/72 tokens (every-token
// logits come in chunks of at most kMaxLogitsRows).
TEST(CudaForward, TensorCorePrefillStaysNearTheReference) {
  for (const ModelCase& mc : {ModelCase{"tiny", model::WeightTypes::kMixed, 180},
                              ModelCase{"small", model::WeightTypes::kMixed, 200}}) {
    const model::Model& m = synthetic_model(mc.preset, mc.types);
    const std::vector<int32_t> tokens = test_tokens(mc.n_tokens, m.config.n_vocab, 11);
    for (bool official : {false, true}) {
      const cpu::SimOptions mode = official ? cpu::SimOptions::official() : cpu::SimOptions::plain();
      SCOPED_TRACE(::testing::Message() << mc.preset << (official ? " official" : " plain"));
      const std::vector<float> ref = cpu::testing::run_chunked(m, tokens, 64, mode);
      const std::vector<float> got =
          gpu_logits(m, tokens, mode, DeviceSession::kTensorCoreMaxChunk, PrefillMath::kTensorCoreF16);
      ASSERT_EQ(got.size(), ref.size());
      const Comparison c = compare(got, ref, m.config.n_vocab);
      std::printf("tensor-core prefill %-6s %-9s worst rel L2 %.2e median %.2e argmax %lld/%lld mismatches\n",
                  mc.preset, official ? "official" : "plain", c.worst(), c.median(),
                  static_cast<long long>(c.argmax_mismatches), static_cast<long long>(c.argmax_checked));
      EXPECT_LE(c.median(), official ? 8e-2 : 6e-3);
      EXPECT_LE(static_cast<double>(c.argmax_mismatches), (official ? 0.3 : 0.03) * static_cast<double>(c.argmax_checked));
      EXPECT_GT(c.argmax_checked, mc.n_tokens / 2);
    }
  }
}

// A session's capacity sizes scratch that shapes launches (the attention's split partials, the
// indexer's score rows: ChunkShape::end), never what a token computes: a prompt prefilled in a
// session of its own length and in one of 64 times it leaves the same bits in the last logits, in
// chunks of 512 tokens (whole-token attention) and of 32 (the split form with its combine).
TEST(CudaForward, LongCapacityGivesTheSameLogits) {
  const model::Model& m = synthetic_model("small", model::WeightTypes::kMixed);
  const std::vector<int32_t> tokens = test_tokens(600, m.config.n_vocab, 13);
  std::shared_ptr<const DeviceModel> dev = std::move(upload_model(m)).value();
  const auto last_logits = [&](int max_chunk, int64_t capacity) {
    auto s = DeviceSession::create(dev, capacity, cpu::SimOptions::official(), max_chunk, PrefillMath::kTensorCoreSplit);
    EXPECT_TRUE(s.ok()) << s.error().message;
    if (!s.ok()) return std::vector<float>{};
    const Status st = (*s)->forward(tokens, nullptr);
    EXPECT_TRUE(st.ok()) << st.message();
    return std::vector<float>((*s)->logits().begin(), (*s)->logits().end());
  };
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (const int max_chunk : {512, 32}) {
    SCOPED_TRACE(::testing::Message() << "chunks of " << max_chunk);
    const std::vector<float> own = last_logits(max_chunk, n), long_capacity = last_logits(max_chunk, 64 * n);
    ASSERT_EQ(own.size(), static_cast<size_t>(m.config.n_vocab));
    ASSERT_EQ(long_capacity.size(), own.size());
    EXPECT_EQ(std::memcmp(own.data(), long_capacity.data(), own.size() * sizeof(float)), 0);
  }
}

TEST(CudaForward, MatchesTransformersFixtures) {
  const std::vector<std::filesystem::path> paths = dsv4::testing::reference_fixture_paths();
  ASSERT_GE(paths.size(), 4u);
  for (const auto& path : paths) {
    const dsv4::testing::ReferenceFixture f = dsv4::testing::read_reference_fixture(path);
    model::SyntheticSpec spec;
    spec.preset = f.preset;
    spec.seed = f.seed;
    std::vector<uint8_t> bytes = model::make_synthetic_model(spec)->serialize();
    ASSERT_EQ(sha256_hex(bytes), f.gguf_sha256) << f.name << ": regenerate the fixtures (docs/FIXTURES.md)";
    auto m = model::load_model_from_file(gguf::File::parse(bytes, f.name).value()).value();
    const bool official = f.mode == "official";
    const std::vector<float> got = gpu_logits(*m, f.tokens, official ? cpu::SimOptions::official() : cpu::SimOptions::plain());
    const Comparison c = compare(got, f.logits, f.vocab);
    std::printf("%-22s worst rel L2 %.2e median %.2e argmax %lld/%lld mismatches\n", f.name.c_str(), c.worst(),
                c.median(), static_cast<long long>(c.argmax_mismatches), static_cast<long long>(c.argmax_checked));
    if (official && f.preset != "tiny") {
      EXPECT_LE(c.median(), 5e-3) << f.name;
      EXPECT_LE(static_cast<double>(c.argmax_mismatches), 0.01 * static_cast<double>(c.argmax_checked)) << f.name;
    } else {
      EXPECT_LE(c.worst(), 1e-3) << f.name;
      EXPECT_EQ(c.argmax_mismatches, 0) << f.name;
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing

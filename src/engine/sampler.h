// Token sampling on one logits vector (float[V]): penalties, temperature, top-k, min-p, top-p,
// a seeded draw, and OpenAI-style logprobs. This is the reference sampler: the CUDA backend's
// on-device sampler (PERFORMANCE.md item 10) must keep exactly these semantics.
//
// Order of operations (PROTOCOL.md §4.4 semantics, ds4's sampler):
//   1. Penalties (OpenAI): logit[t] -= presence * (count[t] > 0) + frequency * count[t], where
//      count[t] is how often t occurs among the tokens generated so far (sample() and accept()).
//   2. Temperature 0 -> argmax of the penalised logits (lowest id among ties); stop here.
//   3. top-k (0 = off; values above kMaxTopK are capped, as in ds4): keep the k largest
//      penalised logits, ties broken towards the lower id. Temperature cannot change this set.
//   4. Temperature: candidate weights w = exp((logit - max) / T), so the top weight is exactly 1.
//   5. min-p and top-p, both measured on the distribution after step 4 (renormalised over the
//      top-k set): min-p keeps tokens with w >= min_p * top weight; top-p walks the candidates in
//      descending order (logit desc, id asc) and cuts once the cumulative mass reaches top_p
//      (the token that reaches it is kept). Both are cuts of the same descending list, so the kept
//      set is the shorter of the two prefixes and their relative order does not matter.
//   6. Draw one token from the kept weights with the sampler's own PRNG (xoshiro256**).
// At least the top token always survives. Non-finite logits (NaN, +-inf) are never candidates.
//
// Boundary rule: a cumulative mass within kBoundaryTolerance of top_p counts as reaching it, and
// a weight within a relative kBoundaryTolerance of the min-p threshold is kept. In exact
// arithmetic such cases sit exactly on the boundary; the tolerance makes float rounding resolve
// them the way the exact arithmetic would (keep the boundary token, add no further one).
//
// Logprobs are those of the model's raw distribution: log_softmax(logits) exactly as given,
// before penalties, temperature and truncation (OpenAI's behaviour, vLLM's default
// "raw_logprobs"). Reported for the chosen token and the top-N alternatives (N <= 20).
//
// The sampler is deterministic for every seed, 0 included: callers that want the spec's
// "seed 0 => time-based" behaviour resolve the seed first with entropy_seed().
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "util/status.h"

namespace dsv4::engine {

inline constexpr int32_t kMaxTopK = 1024;         // PROTOCOL.md §4.4: top_k capped at 1024
inline constexpr int32_t kMaxTopLogprobs = 20;    // OpenAI's limit for top_logprobs
inline constexpr double kBoundaryTolerance = 1e-6;

struct SamplingParams {
  float temperature = 1.0f;  // >= 0; 0 = greedy
  float top_p = 1.0f;        // (0, 1]; 1 = off
  float min_p = 0.05f;       // [0, 1]; PROTOCOL.md §4.4 default 0.05
  int32_t top_k = 0;         // >= 0; 0 = off; > kMaxTopK is capped
  float presence_penalty = 0.0f;   // [-2, 2]
  float frequency_penalty = 0.0f;  // [-2, 2]
  uint64_t seed = 0;         // used as is (see entropy_seed())
  bool logprobs = false;     // report the chosen token's logprob
  int32_t top_logprobs = 0;  // [0, kMaxTopLogprobs]; needs logprobs
};

// Checks every field; the error message starts with the offending field's name
// ("top_p must be in (0, 1], got 1.5") so the server can report it as the `param`.
Status validate(const SamplingParams& params);

// A seed from the clock and the OS entropy source, for requests without a seed (or seed 0).
uint64_t entropy_seed();

// xoshiro256** seeded through splitmix64: small, fast, and bit-identical on every platform and
// standard library (std:: distributions are not), so a seed replays the same tokens anywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::array<uint64_t, 4> s_{};
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

struct Sample {
  int32_t token = -1;
  float logprob = 0.0f;  // raw-distribution logprob of `token`; set only when params.logprobs
  int32_t n_top = 0;     // entries of `top` in use: min(top_logprobs, finite logits)
  std::array<TokenLogprob, kMaxTopLogprobs> top{};  // descending logprob, ties by lower id

  std::span<const TokenLogprob> top_logprobs() const {
    return {top.data(), static_cast<size_t>(n_top)};
  }
};

// One generation's sampler: parameters, PRNG state and the penalty history. All scratch is sized
// to the vocabulary once, in create(); sample() allocates nothing. Not thread-safe.
class Sampler {
 public:
  enum class Mode {
    kParams,     // the request's sampling as above
    kRawGreedy,  // argmax of the raw logits, no penalties: structural tokens of tool calls
                 // (PROTOCOL.md §3.5), which penalties could otherwise corrupt
  };

  static Result<Sampler> create(int32_t vocab_size, const SamplingParams& params);

  // Starts a new generation without reallocating: validates and adopts `params`, reseeds the
  // PRNG from params.seed and clears the penalty history.
  Status reset(const SamplingParams& params);

  // Picks the next token from `logits` (size vocab_size) and records it in the penalty history.
  // Greedy picks (temperature 0, kRawGreedy) draw no random number. Errors: wrong size, or no
  // finite logit.
  Result<Sample> sample(std::span<const float> logits, Mode mode = Mode::kParams);

  // Records a token appended without sample() (e.g. forced by the caller) in the history.
  void accept(int32_t token);
  void clear_history();
  uint32_t count(int32_t token) const { return counts_[static_cast<size_t>(token)]; }

  // Writes the exact distribution sample() would draw from with the current history into
  // `probs` (size vocab_size; 0 for excluded tokens, one-hot at temperature 0). Does not touch
  // the PRNG or the history. For tests and for checking other samplers against this one.
  Status distribution(std::span<const float> logits, std::span<float> probs);

  const SamplingParams& params() const { return params_; }
  int32_t vocab_size() const { return vocab_size_; }

  // For samplers that run elsewhere with these semantics (the CUDA backend's): the distinct
  // tokens of the penalty history (counts through count()), and the PRNG, from which they draw
  // exactly when sample() would.
  std::span<const int32_t> history() const { return touched_; }
  Rng& rng() { return rng_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;   // penalised logit, the sort key
    float weight;  // exp((logit - max) / T)
  };

  Sampler(int32_t vocab_size, const SamplingParams& params);
  Status check_logits(std::span<const float> logits) const;
  size_t select_top(const float* logits, size_t n);
  // Penalised logits: `logits` itself when no penalty applies, else a copy in work_.
  const float* penalised(std::span<const float> logits);
  // Fills cand_[0, n_kept_) with the kept candidates (steps 3-5) and kept_sum_ with their mass.
  Status select_candidates(const float* logits);
  void compute_logprobs(std::span<const float> logits, int32_t token, Sample& out);

  int32_t vocab_size_;
  SamplingParams params_;
  Rng rng_;
  std::vector<uint32_t> counts_;   // occurrences of each token in the history
  std::vector<int32_t> touched_;   // distinct tokens with counts_ > 0, for sparse work
  std::vector<float> work_;        // penalised copy of the logits
  std::vector<Candidate> cand_;    // candidates, then the kept set in draw order
  int32_t n_kept_ = 0;
  double kept_sum_ = 0.0;
};

}  // namespace dsv4::engine

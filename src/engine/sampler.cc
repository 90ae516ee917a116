#include "engine/sampler.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

namespace dsv4::engine {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

Error range_error(const char* field, const char* range, double got) {
  return make_error(std::string(field) + " must be " + range + ", got " + number(got));
}

// Descending logit, then ascending id: a strict total order (ids are unique), so nth_element and
// sort select and arrange the same elements under every standard library.
bool before(float logit_a, int32_t id_a, float logit_b, int32_t id_b) {
  return logit_a > logit_b || (logit_a == logit_b && id_a < id_b);
}

// Lowest id among the largest finite logits, -1 when none is finite.
int32_t argmax(const float* logits, int32_t n) {
  int32_t best = -1;
  float best_v = 0.0f;
  for (int32_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (!std::isfinite(v)) continue;
    if (best < 0 || v > best_v) {
      best = i;
      best_v = v;
    }
  }
  return best;
}

Error no_finite_logit() { return make_error("sampler: no finite logit"); }

}  // namespace

// Writes the n best finite logits (logit desc, id asc) to c[0, m) in that order; m = min(n,
// finite count). One pass with a heap of the n best so far: the common case is a single compare
// against the current worst, so this costs O(V) plus O(n log n), never a sort of the vocabulary.
size_t Sampler::select_top(const float* logits, size_t n) {
  const auto cmp = [](const Candidate& a, const Candidate& b) {
    return before(a.logit, a.id, b.logit, b.id);
  };
  Candidate* c = cand_.data();
  size_t m = 0;
  for (int32_t i = 0; i < vocab_size_; ++i) {
    const float v = logits[i];
    if (!std::isfinite(v)) continue;
    if (m < n) {
      c[m++] = Candidate{i, v, 0.0f};
      if (m == n) std::make_heap(c, c + n, cmp);  // max-heap under cmp: c[0] is the worst kept
    } else if (v > c[0].logit) {
      // Ids arrive in increasing order, so an equal logit never displaces the kept one.
      std::pop_heap(c, c + n, cmp);
      c[n - 1] = Candidate{i, v, 0.0f};
      std::push_heap(c, c + n, cmp);
    }
  }
  if (m < n) {
    std::sort(c, c + m, cmp);
  } else {
    std::sort_heap(c, c + m, cmp);
  }
  return m;
}

namespace {

}  // namespace

Status validate(const SamplingParams& p) {
  // `!(x >= lo)` style comparisons reject NaN along with out-of-range values.
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return range_error("temperature", "a finite number >= 0", p.temperature);
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return range_error("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return range_error("min_p", "in [0, 1]", p.min_p);
  if (p.top_k < 0) return range_error("top_k", ">= 0 (0 = off)", p.top_k);
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return range_error("presence_penalty", "in [-2, 2]", p.presence_penalty);
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return range_error("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  }
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return range_error("top_logprobs", "in [0, 20]", p.top_logprobs);
  }
  if (p.top_logprobs > 0 && !p.logprobs) {
    return make_error("top_logprobs requires logprobs to be true");  // OpenAI's rule
  }
  return Status::ok_status();
}

uint64_t entropy_seed() {
  uint64_t mix = static_cast<uint64_t>(
      std::chrono::high_resolution_clock::now().time_since_epoch().count());
  try {
    std::random_device device;
    mix ^= (static_cast<uint64_t>(device()) << 32) ^ device();
  } catch (...) {
    // No OS entropy source: the clock alone still differs between requests.
  }
  return splitmix64(mix);
}

void Rng::reseed(uint64_t seed) {
  // splitmix64 spreads any seed (0 included) over the 256-bit state, which must not be all zero;
  // splitmix64's outputs of four consecutive states never are.
  uint64_t state = seed;
  for (uint64_t& word : s_) word = splitmix64(state);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

Sampler::Sampler(int32_t vocab_size, const SamplingParams& params)
    : vocab_size_(vocab_size),
      params_(params),
      rng_(params.seed),
      counts_(static_cast<size_t>(vocab_size), 0),
      work_(static_cast<size_t>(vocab_size)),
      cand_(static_cast<size_t>(vocab_size)) {
  touched_.reserve(static_cast<size_t>(vocab_size));  // accept() never reallocates
}

Result<Sampler> Sampler::create(int32_t vocab_size, const SamplingParams& params) {
  if (vocab_size <= 0) return range_error("vocab_size", "> 0", vocab_size);
  DSV4_TRY(validate(params));
  return Sampler(vocab_size, params);
}

Status Sampler::reset(const SamplingParams& params) {
  DSV4_TRY(validate(params));
  params_ = params;
  rng_.reseed(params.seed);
  clear_history();
  return Status::ok_status();
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= vocab_size_) {
    assert(false && "Sampler::accept: token out of range");
    return;
  }
  if (counts_[static_cast<size_t>(token)]++ == 0) touched_.push_back(token);
}

void Sampler::clear_history() {
  for (const int32_t t : touched_) counts_[static_cast<size_t>(t)] = 0;
  touched_.clear();
}

Status Sampler::check_logits(std::span<const float> logits) const {
  if (logits.size() != static_cast<size_t>(vocab_size_)) {
    return make_error("sampler: expected " + std::to_string(vocab_size_) + " logits, got " +
                      std::to_string(logits.size()));
  }
  return Status::ok_status();
}

const float* Sampler::penalised(std::span<const float> logits) {
  const double presence = params_.presence_penalty;
  const double frequency = params_.frequency_penalty;
  if ((presence == 0.0 && frequency == 0.0) || touched_.empty()) return logits.data();
  std::memcpy(work_.data(), logits.data(), logits.size() * sizeof(float));
  // Only tokens in the history change, so the cost is the copy plus O(distinct tokens).
  for (const int32_t t : touched_) {
    const double c = counts_[static_cast<size_t>(t)];
    work_[static_cast<size_t>(t)] -= static_cast<float>(presence + frequency * c);
  }
  return work_.data();
}

Status Sampler::select_candidates(const float* logits) {
  const auto cmp = [](const Candidate& a, const Candidate& b) {
    return before(a.logit, a.id, b.logit, b.id);
  };
  const float temperature = params_.temperature;
  // The top weight is exp(0) = 1 exactly, so "w >= min_p * top weight" is "w >= min_p".
  const double min_weight = static_cast<double>(params_.min_p) * (1.0 - kBoundaryTolerance);
  Candidate* c = cand_.data();
  size_t n = 0;
  double total = 0.0;  // mass of the distribution after top-k, the reference for top-p
  bool sorted = false;

  if (params_.top_k > 0) {
    const size_t k = select_top(logits, static_cast<size_t>(std::min(params_.top_k, kMaxTopK)));
    if (k == 0) return no_finite_logit();
    const float max_logit = c[0].logit;
    for (size_t j = 0; j < k; ++j) {
      c[j].weight = std::exp((c[j].logit - max_logit) / temperature);
      total += c[j].weight;
    }
    // Weights descend along the sorted list: min-p (and underflow to 0) cut a prefix.
    n = k;
    for (size_t j = 1; j < k; ++j) {
      if (c[j].weight <= 0.0f || c[j].weight < min_weight) {
        n = j;
        break;
      }
    }
    sorted = true;
  } else {
    float max_logit = 0.0f;
    bool any = false;
    for (int32_t i = 0; i < vocab_size_; ++i) {
      const float v = logits[i];
      if (!std::isfinite(v)) continue;
      if (!any || v > max_logit) max_logit = v;
      any = true;
    }
    if (!any) return no_finite_logit();
    if (params_.top_p >= 1.0f && params_.min_p > 0.0f) {
      // Without top-p the total mass is not needed, so exp() runs only for logits that can pass
      // min-p. The prefilter is looser (by 0.01 in log space) than the exact test on w below,
      // so the kept set and weights are the same as in the full computation.
      const double cutoff = static_cast<double>(max_logit) +
                            static_cast<double>(temperature) * (std::log(min_weight) - 0.01);
      for (int32_t i = 0; i < vocab_size_; ++i) {
        const float v = logits[i];
        if (!(v >= cutoff) || !std::isfinite(v)) continue;
        const float w = std::exp((v - max_logit) / temperature);
        if (w > 0.0f && w >= min_weight) c[n++] = Candidate{i, v, w};
      }
    } else {
      // One pass: total mass, and min-p survivors collected in id order.
      for (int32_t i = 0; i < vocab_size_; ++i) {
        const float v = logits[i];
        if (!std::isfinite(v)) continue;
        const float w = std::exp((v - max_logit) / temperature);
        total += w;
        if (w > 0.0f && w >= min_weight) c[n++] = Candidate{i, v, w};
      }
    }
  }

  if (params_.top_p < 1.0f) {
    const double target = (static_cast<double>(params_.top_p) - kBoundaryTolerance) * total;
    double cum = 0.0;
    size_t cut = n;
    // Order the survivors lazily: growing chunks, each selected with nth_element then sorted,
    // so a top-p that is reached within the first few tokens never sorts the whole vocabulary.
    size_t done = 0;
    size_t chunk = 64;
    while (done < n) {
      const size_t end = sorted ? n : std::min(n, done + chunk);
      if (!sorted) {
        if (end < n) std::nth_element(c + done, c + end, c + n, cmp);
        std::sort(c + done, c + end, cmp);
      }
      bool reached = false;
      for (size_t j = done; j < end; ++j) {
        cum += c[j].weight;
        if (cum >= target) {
          cut = j + 1;
          reached = true;
          break;
        }
      }
      if (reached) break;
      done = end;
      chunk *= 4;
    }
    n = cut;
  }

  double kept = 0.0;
  for (size_t j = 0; j < n; ++j) kept += c[j].weight;
  n_kept_ = static_cast<int32_t>(n);
  kept_sum_ = kept;
  return Status::ok_status();
}

void Sampler::compute_logprobs(std::span<const float> logits, int32_t token, Sample& out) {
  const float* l = logits.data();
  float max_logit = 0.0f;
  bool any = false;
  for (int32_t i = 0; i < vocab_size_; ++i) {
    if (!std::isfinite(l[i])) continue;
    if (!any || l[i] > max_logit) max_logit = l[i];
    any = true;
  }
  double sum = 0.0;
  for (int32_t i = 0; i < vocab_size_; ++i) {
    // float exp, as for the sampling weights; the sum is kept in double.
    if (std::isfinite(l[i])) sum += std::exp(l[i] - max_logit);
  }
  const double log_z = max_logit + std::log(sum);
  out.logprob = static_cast<float>(l[token] - log_z);

  out.n_top = 0;
  if (params_.top_logprobs <= 0) return;
  // cand_ is free again once the draw is done; reuse it for the top-N selection.
  const size_t top = select_top(l, static_cast<size_t>(params_.top_logprobs));
  const Candidate* c = cand_.data();
  for (size_t j = 0; j < top; ++j) {
    out.top[j] = TokenLogprob{c[j].id, static_cast<float>(c[j].logit - log_z)};
  }
  out.n_top = static_cast<int32_t>(top);
}

Result<Sample> Sampler::sample(std::span<const float> logits, Mode mode) {
  DSV4_TRY(check_logits(logits));
  Sample out;
  if (mode == Mode::kRawGreedy) {
    out.token = argmax(logits.data(), vocab_size_);
  } else {
    const float* l = penalised(logits);
    if (params_.temperature == 0.0f) {
      out.token = argmax(l, vocab_size_);
    } else {
      DSV4_TRY(select_candidates(l));
      // Inverse CDF over the kept weights in their list order (sorted when top-k or top-p had to
      // order them, id order otherwise; either way a function of the inputs alone, so a seed
      // replays). The fallback to the last kept token only absorbs rounding in the subtraction.
      double r = rng_.uniform() * kept_sum_;
      out.token = cand_[static_cast<size_t>(n_kept_ - 1)].id;
      for (int32_t j = 0; j < n_kept_; ++j) {
        r -= cand_[static_cast<size_t>(j)].weight;
        if (r < 0.0) {
          out.token = cand_[static_cast<size_t>(j)].id;
          break;
        }
      }
    }
  }
  if (out.token < 0) return no_finite_logit();
  if (params_.logprobs) compute_logprobs(logits, out.token, out);
  accept(out.token);
  return out;
}

Status Sampler::distribution(std::span<const float> logits, std::span<float> probs) {
  DSV4_TRY(check_logits(logits));
  if (probs.size() != logits.size()) {
    return make_error("sampler: probability output has " + std::to_string(probs.size()) +
                      " entries, expected " + std::to_string(vocab_size_));
  }
  const float* l = penalised(logits);
  std::fill(probs.begin(), probs.end(), 0.0f);
  if (params_.temperature == 0.0f) {
    const int32_t token = argmax(l, vocab_size_);
    if (token < 0) return no_finite_logit();
    probs[static_cast<size_t>(token)] = 1.0f;
    return Status::ok_status();
  }
  DSV4_TRY(select_candidates(l));
  for (int32_t j = 0; j < n_kept_; ++j) {
    const Candidate& c = cand_[static_cast<size_t>(j)];
    probs[static_cast<size_t>(c.id)] = static_cast<float>(c.weight / kept_sum_);
  }
  return Status::ok_status();
}

}  // namespace dsv4::engine

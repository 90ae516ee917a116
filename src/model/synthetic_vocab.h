// The byte-level BPE vocabulary embedded in synthetic models: BOS/EOS/pad, the 256 symbols of
// the GPT-2 byte alphabet, merges learned from a fixed corpus, and the named added tokens the
// chat format needs, resolvable by string like in the real V4 vocabulary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace dsv4::model {

struct SyntheticVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // 1 normal, 3 control, 4 user-defined (llama.cpp convention)
  std::vector<std::string> merges;
  int32_t bos_id = 0;
  int32_t eos_id = 1;
  int32_t pad_id = 2;
};

// Smallest vocabulary size the synthetic vocabulary can fill (specials + byte alphabet).
int64_t synthetic_vocab_min_size();

// Deterministic vocabulary of exactly n_vocab tokens.
Result<SyntheticVocab> make_synthetic_vocab(int64_t n_vocab);

// The GPT-2 byte alphabet: the printable string standing for each byte value.
std::string gpt2_byte_symbol(uint8_t byte);

}  // namespace dsv4::model

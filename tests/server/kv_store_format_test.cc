// The KV cache file header (kv_store_format.h) and the budget/eviction rules of PROTOCOL.md §5.7.
#include "server/kv_store_format.h"

#include <gtest/gtest.h>

#include <random>

#include "server/kv_store_budget.h"

namespace dsv4::server {
namespace {

KvFileHeader sample_header() {
  KvFileHeader h;
  for (int i = 0; i < 32; ++i) {
    h.fingerprint[i] = static_cast<uint8_t>(i * 7 + 1);
    h.key_sha256[i] = static_cast<uint8_t>(255 - i);
  }
  h.mode_flags = 0x20001;
  h.reason = 3;
  h.n_tokens = 10240;
  h.n_ctx = 65536;
  h.created = 1700000000;
  h.key_bytes = 41000;
  h.payload_bytes = 123456789;
  h.hits = 7;
  h.last_used = 1700003600;
  return h;
}

TEST(KvFileHeader, RoundTripsEveryField) {
  const KvFileHeader h = sample_header();
  const auto raw = encode_kv_header(h);
  ASSERT_EQ(raw.size(), 176u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), 8), std::string("DSV4KVC\0", 8));
  auto back = decode_kv_header(raw);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->fingerprint, h.fingerprint);
  EXPECT_EQ(back->mode_flags, h.mode_flags);
  EXPECT_EQ(back->reason, h.reason);
  EXPECT_EQ(back->n_tokens, h.n_tokens);
  EXPECT_EQ(back->n_ctx, h.n_ctx);
  EXPECT_EQ(back->created, h.created);
  EXPECT_EQ(back->key_bytes, h.key_bytes);
  EXPECT_EQ(back->payload_bytes, h.payload_bytes);
  EXPECT_EQ(back->key_sha256, h.key_sha256);
  EXPECT_EQ(back->hits, h.hits);
  EXPECT_EQ(back->last_used, h.last_used);
  EXPECT_EQ(back->file_bytes(), 176u + 41000u + 123456789u);
  // Little-endian at the documented offsets.
  EXPECT_EQ(raw[56], 0x00);
  EXPECT_EQ(raw[57], 0x28);  // 10240 = 0x2800
  EXPECT_EQ(raw[128], 7);
}

// Every bit of the header is covered: any single flipped bit is an error, never a different
// header.
TEST(KvFileHeader, EverySingleBitFlipIsRejected) {
  const auto raw = encode_kv_header(sample_header());
  for (size_t byte = 0; byte < raw.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = raw;
      bad[byte] ^= static_cast<uint8_t>(1u << bit);
      EXPECT_FALSE(decode_kv_header(bad).ok()) << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(KvFileHeader, TruncationsAndOtherVersions) {
  const auto raw = encode_kv_header(sample_header());
  for (size_t n = 0; n < raw.size(); ++n) {
    auto r = decode_kv_header(std::span(raw).first(n));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(kv_file_version(raw), 1u);
  auto v2 = raw;
  v2[8] = 2;
  EXPECT_EQ(kv_file_version(v2), 2u);
  auto r = decode_kv_header(v2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("unsupported version 2"), std::string::npos);
  std::vector<uint8_t> garbage(176, 0x5A);
  EXPECT_FALSE(kv_file_version(garbage).has_value());
  EXPECT_FALSE(decode_kv_header(garbage).ok());
}

TEST(KvFileHeader, ImplausibleFieldsAreRejectedEvenWithAValidChecksum) {
  KvFileHeader h = sample_header();
  h.n_tokens = 0;
  EXPECT_FALSE(decode_kv_header(encode_kv_header(h)).ok());
  h = sample_header();
  h.payload_bytes = ~uint64_t{0} - 100;
  EXPECT_FALSE(decode_kv_header(encode_kv_header(h)).ok());
}

// PROTOCOL.md §6.8: the file name is the SHA-256 of the key.
TEST(KvFileName, IsSha256HexOfTheKey) {
  EXPECT_EQ(kv_file_name("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.dsv4kv");
}

// §5.7 worked example, with this format's 176-byte header.
TEST(KvBudget, WorkedExample) {
  EXPECT_TRUE(kv_fits_budget(176 + 100 + 806, 1100));   // 1 082 + 11 = 1 093
  EXPECT_FALSE(kv_fits_budget(176 + 100 + 814, 1100));  // 1 090 + 11 = 1 101
  EXPECT_TRUE(kv_fits_budget(1000, 1010));              // slack exactly 10
  EXPECT_FALSE(kv_fits_budget(1001, 1011));             // slack rounds up to 11
  EXPECT_TRUE(kv_fits_budget(0, 0));
  EXPECT_FALSE(kv_fits_budget(1, 1));
  EXPECT_FALSE(kv_fits_budget(5000, 1000));
  EXPECT_FALSE(kv_fits_budget(~uint64_t{0}, ~uint64_t{0}));
}

TEST(KvEviction, ScoreFollowsTheFormula) {
  const int64_t now = 1'000'000;
  // No hits: tokens per byte.
  EXPECT_DOUBLE_EQ(kv_eviction_score({1000, 500, 0, now}, now), 0.5);
  // Fresh hits count fully, one half-life (6 h) later half.
  EXPECT_DOUBLE_EQ(kv_eviction_score({1000, 500, 3, now}, now), 2.0);
  EXPECT_DOUBLE_EQ(kv_eviction_score({1000, 500, 3, now - 21600}, now), 1.25);
  // Decayed below 0.01: zero.
  EXPECT_DOUBLE_EQ(kv_eviction_score({1000, 500, 1, now - 21600 * 7}, now), 0.5);
  EXPECT_GT(kv_eviction_score({1000, 500, 1, now - 21600 * 6}, now), 0.5);
  // A last_used in the future is treated as now.
  EXPECT_DOUBLE_EQ(kv_eviction_score({1000, 500, 3, now + 500}, now), 2.0);
}

TEST(KvEviction, VictimIsTheLowestScoreThenTheOlder) {
  const int64_t now = 1'000'000;
  std::vector<KvEvictionCandidate> files = {
      {1000, 900, 0, now - 10},     // 0.9
      {1000, 600, 2, now - 5},      // ~1.8
      {1000, 700, 0, now - 100},    // 0.7  <- lowest
      {1000, 700, 0, now - 50},     // 0.7, newer
  };
  EXPECT_EQ(kv_eviction_victim(files, now, std::nullopt), 2u);
  EXPECT_EQ(kv_eviction_victim(files, now, 2), 3u);
  files[3].last_used = now - 200;  // now the older of the tie
  EXPECT_EQ(kv_eviction_victim(files, now, std::nullopt), 3u);
  EXPECT_EQ(kv_eviction_victim({}, now, std::nullopt), std::nullopt);
  EXPECT_EQ(kv_eviction_victim(std::span(files).first(1), now, 0), std::nullopt);
}

// Against a plain re-implementation on random inputs: the victim has the minimum score and,
// among equal scores, the minimum last_used.
TEST(KvEviction, RandomVictimsAreMinimal) {
  std::mt19937_64 rng(7);
  const int64_t now = 2'000'000'000;
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<KvEvictionCandidate> files(1 + rng() % 12);
    for (auto& f : files) {
      f.file_bytes = 1 + rng() % 4;
      f.n_tokens = 1 + rng() % 4;
      f.hits = static_cast<uint32_t>(rng() % 3);
      f.last_used = now - static_cast<int64_t>(rng() % 3) * 40000;
    }
    const auto v = kv_eviction_victim(files, now, std::nullopt);
    ASSERT_TRUE(v.has_value());
    for (size_t i = 0; i < files.size(); ++i) {
      const double si = kv_eviction_score(files[i], now), sv = kv_eviction_score(files[*v], now);
      ASSERT_TRUE(sv < si || (sv == si && files[*v].last_used <= files[i].last_used)) << trial << " " << i;
    }
  }
}

}  // namespace
}  // namespace dsv4::server

// The disk KV store (server/kv_store.h, PROTOCOL.md §5.6–5.7): store/lookup, restart, skipping
// rules, budget and eviction, consumption, usage updates. Payloads are snapshot envelopes with
// chosen tokens and opaque state (the store verifies the envelope; a real engine round trip is in
// kv_store_engine_test.cc). Damaged files are in kv_store_damage_test.cc.
#include "server/kv_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "kv_store_test_util.h"

namespace dsv4::server {
namespace {

using namespace testing;

class KvStoreTest : public KvStoreFixture {};

// PROTOCOL.md §6.8's lookup vector.
TEST_F(KvStoreTest, LongestPrefixWins) {
  KvStoreOptions o = options();
  o.min_tokens = 512;
  auto s = open(o, fp_, mode_);
  ASSERT_TRUE(put(*s, "transcript prefix", 512));
  ASSERT_TRUE(put(*s, "transcript prefix with sampled token bytes", 768));
  EXPECT_EQ(s->file_count(), 2u);

  auto hit = get(*s, "transcript prefix with sampled token bytes and suffix");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->key, "transcript prefix with sampled token bytes");
  EXPECT_EQ(hit->tokens, make_tokens(768));
  EXPECT_EQ(hit->snapshot, fake_snapshot(fp_, mode_, 768));
  EXPECT_EQ(hit->file, file_of("transcript prefix with sampled token bytes").string());

  EXPECT_FALSE(get(*s, "transcript prefiX").has_value());
  EXPECT_FALSE(get(*s, "transcript").has_value());
  hit = get(*s, "transcript prefix and more");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->key, "transcript prefix");
  // A key equal to the whole prompt is a prefix too.
  hit = get(*s, "transcript prefix");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens.size(), 512u);
  EXPECT_TRUE(s->warnings().empty());
}

TEST_F(KvStoreTest, BinaryKeysWithEscapes) {
  auto s = open();
  const std::string key("\xFF\x00\x00\x00\x00Hello\xFF\x03\x00\x00\x00", 15);
  ASSERT_TRUE(put(*s, key, 20));
  auto hit = get(*s, key + "world");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->key, key);
  EXPECT_FALSE(get(*s, key.substr(0, 14) + '\x04' + "world").has_value());
}

TEST_F(KvStoreTest, RestartFindsEntries) {
  {
    auto s = open();
    ASSERT_TRUE(put(*s, "alpha", 10));
    ASSERT_TRUE(put(*s, "alpha beta", 20));
  }
  auto s = open();
  EXPECT_EQ(s->file_count(), 2u);
  EXPECT_EQ(s->total_bytes(), fs::file_size(file_of("alpha")) + fs::file_size(file_of("alpha beta")));
  auto hit = get(*s, "alpha beta gamma");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, make_tokens(20));
  EXPECT_TRUE(s->warnings().empty());
}

// Files written by another process after open are found on a miss (the index is refreshed).
TEST_F(KvStoreTest, MissRefreshesTheIndex) {
  auto reader = open();
  EXPECT_FALSE(get(*reader, "late entry and more").has_value());
  auto writer = open();
  ASSERT_TRUE(put(*writer, "late entry", 10));
  auto hit = get(*reader, "late entry and more");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(reader->file_count(), 1u);
}

TEST_F(KvStoreTest, OtherFingerprintModeOrLargerContextIsSkipped) {
  auto s = open();
  ASSERT_TRUE(put(*s, "shared prefix", 10, /*n_ctx=*/4096));

  auto other_model = open(options(), fingerprint(2), mode_);
  EXPECT_FALSE(get(*other_model, "shared prefix and more").has_value());
  auto other_mode = open(options(), fp_, engine::Mode::kPlain);
  EXPECT_FALSE(get(*other_mode, "shared prefix and more").has_value());
  // Skipped, not removed: the budget counts them, another server may use them.
  EXPECT_EQ(other_model->file_count(), 1u);
  EXPECT_EQ(other_model->total_bytes(), s->total_bytes());
  EXPECT_TRUE(fs::exists(file_of("shared prefix")));
  EXPECT_TRUE(other_model->warnings().empty());

  EXPECT_FALSE(get(*s, "shared prefix and more", 2048).has_value());
  EXPECT_TRUE(get(*s, "shared prefix and more", 4096).has_value());
  EXPECT_TRUE(get(*s, "shared prefix and more", 8192).has_value());
}

TEST_F(KvStoreTest, MinTokens) {
  auto s = open();
  auto r = s->store("short", make_tokens(7), StoreReason::kCold, 4096, fake_snapshot(fp_, mode_, 7));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  r = s->store("empty", {}, StoreReason::kCold, 4096, fake_snapshot(fp_, mode_, 0));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(list_names(dir_.path()).size(), 0u);

  ASSERT_TRUE(put(*s, "eight", 8));
  KvStoreOptions o = options();
  o.min_tokens = 9;
  auto stricter = open(o, fp_, mode_);
  EXPECT_FALSE(get(*stricter, "eight tokens").has_value());
  EXPECT_TRUE(get(*s, "eight tokens").has_value());
}

TEST_F(KvStoreTest, ReplacingAKeyKeepsOneFile) {
  auto s = open();
  ASSERT_TRUE(put(*s, "same key", 10));
  ASSERT_TRUE(put(*s, "same key", 12));
  EXPECT_EQ(s->file_count(), 1u);
  EXPECT_EQ(s->total_bytes(), fs::file_size(file_of("same key")));
  auto hit = get(*s, "same key!");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens.size(), 12u);
}

// §5.7's worked example through store(): 176 + 100 + 806 bytes fit a budget of 1 100 with the
// 1 % slack, 176 + 100 + 814 do not.
TEST_F(KvStoreTest, BudgetSkip) {
  const std::string key(100, 'k');
  const size_t n = 8;
  ASSERT_EQ(fake_snapshot_bytes(n, 678), 806u);
  {
    auto s = open(1100);
    auto r = s->store(key, make_tokens(n), StoreReason::kCold, 4096, fake_snapshot(fp_, mode_, n, 686));
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(*r);
    EXPECT_TRUE(any_contains(s->warnings(), "exceed the budget of 1100"));
    EXPECT_TRUE(list_names(dir_.path()).empty());
    EXPECT_EQ(s->total_bytes(), 0u);
  }
  auto s = open(1100);
  ASSERT_TRUE(put(*s, key, n, 4096, 678));
  EXPECT_EQ(s->total_bytes(), 1082u);
  EXPECT_TRUE(get(*s, key + "x").has_value());
}

// §5.7 order: lowest (effective_hits + 1) × tokens / bytes first; the new file is protected.
TEST_F(KvStoreTest, EvictionOrder) {
  const size_t n = 100, state = 4000;
  const uint64_t file = kKvHeaderSize + 5 + fake_snapshot_bytes(n, state);
  auto s = open(3 * file + file / 2);
  const int64_t t0 = clock_;
  ASSERT_TRUE(put(*s, "key-A", n, 4096, state));
  clock_ = t0 + 10;
  ASSERT_TRUE(put(*s, "key-B", n, 4096, state));
  clock_ = t0 + 20;
  ASSERT_TRUE(put(*s, "key-C", n, 4096, state));
  EXPECT_EQ(s->total_bytes(), 3 * file);
  clock_ = t0 + 30;
  ASSERT_TRUE(get(*s, "key-B...").has_value());
  ASSERT_TRUE(get(*s, "key-B...").has_value());
  ASSERT_TRUE(get(*s, "key-C...").has_value());
  // A: 0 hits (score 1), B: 2 hits (~3), C: 1 hit (~2).
  clock_ = t0 + 40;
  ASSERT_TRUE(put(*s, "key-D", n, 4096, state));
  EXPECT_FALSE(fs::exists(file_of("key-A")));
  EXPECT_TRUE(fs::exists(file_of("key-B")) && fs::exists(file_of("key-C")) && fs::exists(file_of("key-D")));
  EXPECT_EQ(s->total_bytes(), 3 * file);
  // D has no hits: it goes when E arrives, E itself protected.
  clock_ = t0 + 50;
  ASSERT_TRUE(put(*s, "key-E", n, 4096, state));
  EXPECT_FALSE(fs::exists(file_of("key-D")));
  EXPECT_TRUE(fs::exists(file_of("key-B")) && fs::exists(file_of("key-C")) && fs::exists(file_of("key-E")));
  // A week later the hits have decayed to nothing and every score is equal: the older last_used
  // goes, B or C (both t0 + 30), not E (t0 + 50).
  clock_ = t0 + 7 * 86400;
  ASSERT_TRUE(put(*s, "key-F", n, 4096, state));
  EXPECT_TRUE(fs::exists(file_of("key-E")) && fs::exists(file_of("key-F")));
  EXPECT_EQ(fs::exists(file_of("key-B")) + fs::exists(file_of("key-C")), 1);
  EXPECT_EQ(s->file_count(), 3u);
  EXPECT_TRUE(s->warnings().empty());
}

TEST_F(KvStoreTest, TiesGoToTheOlderLastUsed) {
  const size_t n = 50, state = 1000;
  const uint64_t file = kKvHeaderSize + 5 + fake_snapshot_bytes(n, state);
  auto s = open(2 * file + file / 2);
  ASSERT_TRUE(put(*s, "key-X", n, 4096, state));
  clock_ += 5;
  ASSERT_TRUE(put(*s, "key-Y", n, 4096, state));
  clock_ += 5;
  ASSERT_TRUE(put(*s, "key-Z", n, 4096, state));
  EXPECT_FALSE(fs::exists(file_of("key-X")));
  EXPECT_TRUE(fs::exists(file_of("key-Y")) && fs::exists(file_of("key-Z")));
}

TEST_F(KvStoreTest, OpenEvictsDownToASmallerBudget) {
  const size_t state = 2000;
  {
    auto s = open();
    ASSERT_TRUE(put(*s, "key-1", 10, 4096, state));
    clock_ += 1;
    ASSERT_TRUE(put(*s, "key-2", 40, 4096, state));  // more tokens per byte: kept longest
    clock_ += 1;
    ASSERT_TRUE(put(*s, "key-3", 20, 4096, state));
  }
  const uint64_t one = fs::file_size(file_of("key-2"));
  auto s = open(one + 10);
  EXPECT_EQ(s->file_count(), 1u);
  EXPECT_TRUE(fs::exists(file_of("key-2")));
  EXPECT_LE(s->total_bytes(), one + 10);
}

TEST_F(KvStoreTest, LargeHitsAreConsumed) {
  auto s = open();
  ASSERT_TRUE(put(*s, "big", 1001));
  ASSERT_TRUE(put(*s, "small", 1000));
  ASSERT_TRUE(get(*s, "big prompt").has_value());
  EXPECT_FALSE(fs::exists(file_of("big")));
  EXPECT_FALSE(get(*s, "big prompt").has_value());
  ASSERT_TRUE(get(*s, "small prompt").has_value());
  ASSERT_TRUE(get(*s, "small prompt").has_value());
  EXPECT_TRUE(fs::exists(file_of("small")));
  EXPECT_EQ(s->file_count(), 1u);
  EXPECT_EQ(s->total_bytes(), fs::file_size(file_of("small")));
}

TEST_F(KvStoreTest, HitsAndLastUsedAreUpdatedInPlace) {
  const int64_t t0 = clock_;
  {
    auto s = open();
    ASSERT_TRUE(put(*s, "usage", 10));
    KvFileHeader h = header_of("usage");
    EXPECT_EQ(h.hits, 0u);
    EXPECT_EQ(h.created, t0);
    EXPECT_EQ(h.last_used, t0);
    EXPECT_EQ(h.reason, static_cast<uint32_t>(StoreReason::kManual));
    EXPECT_EQ(h.n_ctx, 4096u);
    const auto before = read_bytes(file_of("usage"));
    clock_ = t0 + 100;
    ASSERT_TRUE(get(*s, "usage!").has_value());
    h = header_of("usage");
    EXPECT_EQ(h.hits, 1u);
    EXPECT_EQ(h.last_used, t0 + 100);
    EXPECT_EQ(h.created, t0);
    // Only the usage block changed.
    const auto after = read_bytes(file_of("usage"));
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      if (i < kKvUsageOffset || i >= kKvHeaderSize) {
        ASSERT_EQ(after[i], before[i]) << i;
      }
    }
    clock_ = t0 + 200;
    ASSERT_TRUE(get(*s, "usage!").has_value());
  }
  auto s = open();
  EXPECT_EQ(header_of("usage").hits, 2u);
  EXPECT_EQ(header_of("usage").last_used, t0 + 200);
  ASSERT_TRUE(get(*s, "usage!").has_value());
  EXPECT_EQ(header_of("usage").hits, 3u);
  EXPECT_TRUE(s->warnings().empty());
}

// Readers look up while a writer stores and evicts: every answer is a verified prefix hit or a
// miss, nothing is reported damaged, nothing crashes.
TEST_F(KvStoreTest, ConcurrentLookupsDuringStores) {
  const size_t state = 3000;
  const uint64_t file = kKvHeaderSize + 8 + fake_snapshot_bytes(30, state);
  auto s = open(5 * file);
  std::atomic<bool> done{false};
  std::atomic<int> hits{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      int i = r;
      while (!done) {
        const std::string prompt = "key-" + std::to_string(1000 + i++ % 40) + " and the rest";
        auto got = s->lookup(prompt, 4096);
        if (!got.ok()) {
          ++bad;
        } else if (got->has_value()) {
          const KvHit& h = **got;
          if (prompt.compare(0, h.key.size(), h.key) != 0 || h.tokens.size() != 30) ++bad;
          ++hits;
        }
      }
    });
  }
  for (int i = 0; i < 40; ++i) {
    clock_ += 1;
    ASSERT_TRUE(put(*s, "key-" + std::to_string(1000 + i), 30, 4096, state));
  }
  // Let the readers see the final set too.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (hits < 20 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_GE(hits, 20);
  EXPECT_LE(s->total_bytes(), 5 * file);
  EXPECT_TRUE(s->warnings().empty());
}

}  // namespace
}  // namespace dsv4::server

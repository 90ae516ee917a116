// Helpers for the KV store tests: a private temporary directory, snapshot envelopes with chosen
// tokens (the store verifies the envelope, not the backend state), and raw file access.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/snapshot.h"
#include "server/kv_store.h"

namespace dsv4::server::testing {

namespace fs = std::filesystem;

using Fingerprint = std::array<uint8_t, 32>;

inline Fingerprint fingerprint(uint8_t seed) {
  Fingerprint f{};
  for (int i = 0; i < 32; ++i) f[i] = static_cast<uint8_t>(seed * 31 + i);
  return f;
}

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("dsv4_kv_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

inline std::vector<int32_t> make_tokens(size_t n, int salt = 0) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 37 + salt * 11 + 5) % 500);
  return t;
}

// A valid snapshot envelope of `n` tokens with `state_bytes` bytes of opaque state.
inline std::vector<uint8_t> fake_snapshot(const Fingerprint& fp, engine::Mode mode, size_t n,
                                          size_t state_bytes = 64, int salt = 0) {
  engine::SnapshotContents c;
  c.mode = mode;
  c.model = fp;
  c.tokens = make_tokens(n, salt);
  c.state.resize(state_bytes);
  for (size_t i = 0; i < state_bytes; ++i) c.state[i] = static_cast<uint8_t>(i * 13 + salt);
  return engine::encode_snapshot(c);
}

// Payload size of fake_snapshot(n, state): the envelope of engine/snapshot.h.
inline size_t fake_snapshot_bytes(size_t n, size_t state_bytes) { return 96 + 4 * n + state_bytes; }

inline std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline void write_bytes(const fs::path& p, std::span<const uint8_t> bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<std::string> list_names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines) {
    if (l.find(needle) != std::string::npos) return true;
  }
  return false;
}

// A store on a private directory with a test clock; put/get fail the test on errors.
class KvStoreFixture : public ::testing::Test {
 protected:
  KvStoreOptions options(uint64_t budget = 1ull << 30) {
    KvStoreOptions o;
    o.dir = dir_.str();
    o.budget_bytes = budget;
    o.min_tokens = 8;
    o.cold_max_tokens = 1000;
    o.clock = [this] { return clock_.load(); };
    return o;
  }
  std::unique_ptr<KvStore> open(const KvStoreOptions& o, const Fingerprint& fp, engine::Mode mode) {
    auto s = KvStore::open(o, fp, kv_mode_flags(mode));
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::unique_ptr<KvStore> open(uint64_t budget = 1ull << 30) { return open(options(budget), fp_, mode_); }

  bool put(KvStore& s, std::string_view key, size_t n, int64_t n_ctx = 4096, size_t state = 64) {
    const auto tokens = make_tokens(n);
    auto r = s.store(key, tokens, StoreReason::kManual, n_ctx, fake_snapshot(fp_, mode_, n, state));
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() && *r;
  }
  std::optional<KvHit> get(KvStore& s, std::string_view prompt, int64_t n_ctx = 4096) {
    auto r = s.lookup(prompt, n_ctx);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : std::nullopt;
  }
  fs::path file_of(std::string_view key) const { return dir_.path() / kv_file_name(key); }
  KvFileHeader header_of(std::string_view key) const {
    auto h = decode_kv_header(read_bytes(file_of(key)));
    EXPECT_TRUE(h.ok()) << h.error().message;
    return h.ok() ? *h : KvFileHeader{};
  }

  TempDir dir_;
  std::atomic<int64_t> clock_{1'700'000'000};
  Fingerprint fp_ = fingerprint(1);
  engine::Mode mode_ = engine::Mode::kOfficial;
};

}  // namespace dsv4::server::testing

// Damaged caches (server/kv_store.h): a flipped byte in every region of a file, truncation at
// many offsets, empty and garbage files, files of another version, leftovers, an unwritable or
// vanished directory and a full disk. Each gives a warning or an error value, the damaged file is
// never loaded, and nothing else is lost.
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "kv_store_test_util.h"
#include "server/kv_store.h"

namespace dsv4::server {
namespace {

using namespace testing;

// Two entries, the longer one to be damaged: a lookup must then fall back to the shorter one.
class KvDamageTest : public KvStoreFixture {
 protected:
  static constexpr const char* kShort = "prefix";
  static constexpr const char* kLong = "prefix and more";
  static constexpr const char* kPrompt = "prefix and more text";
  static constexpr size_t kLongTokens = 12;

  void SetUp() override {
    auto s = open();
    ASSERT_TRUE(put(*s, kShort, 10, 4096, 500));
    ASSERT_TRUE(put(*s, kLong, kLongTokens, 4096, 500));
    short_bytes_ = read_bytes(file_of(kShort));
    long_bytes_ = read_bytes(file_of(kLong));
    ASSERT_EQ(long_bytes_.size(), kKvHeaderSize + 15 + fake_snapshot_bytes(kLongTokens, 500));
  }

  // After the damage: the lookup answers with the short entry, says why it skipped the long one,
  // and removed it; the short entry is untouched.
  void expect_fallback(KvStore& s, const std::string& what) {
    auto hit = get(s, kPrompt);
    ASSERT_TRUE(hit.has_value()) << what;
    EXPECT_EQ(hit->key, kShort) << what;
    const std::vector<std::string> w = s.warnings();
    EXPECT_TRUE(any_contains(w, kv_file_name(kLong) + ": ")) << what << ": " << ::testing::PrintToString(w);
    EXPECT_TRUE(any_contains(w, "removed")) << what << ": " << ::testing::PrintToString(w);
    EXPECT_FALSE(fs::exists(file_of(kLong))) << what;
    EXPECT_EQ(s.file_count(), 1u) << what;
    EXPECT_EQ(s.total_bytes(), short_bytes_.size()) << what;
    // The short entry's usage block changed with the hit; the rest is as written.
    auto now = read_bytes(file_of(kShort));
    ASSERT_EQ(now.size(), short_bytes_.size()) << what;
    EXPECT_TRUE(std::equal(now.begin() + kKvHeaderSize, now.end(), short_bytes_.begin() + kKvHeaderSize)) << what;
  }

  // A changed version field reads as a file of another format version: skipped with a warning
  // but kept (a newer build may own it), and left out of the budget.
  void expect_foreign(KvStore& s, const std::string& what) {
    auto hit = get(s, kPrompt);
    ASSERT_TRUE(hit.has_value()) << what;
    EXPECT_EQ(hit->key, kShort) << what;
    const std::vector<std::string> w = s.warnings();
    EXPECT_TRUE(any_contains(w, kv_file_name(kLong) + ": format version 17 (this build reads 1); ignored"))
        << what << ": " << ::testing::PrintToString(w);
    EXPECT_TRUE(fs::exists(file_of(kLong))) << what;
    EXPECT_EQ(s.file_count(), 1u) << what;
    EXPECT_EQ(s.total_bytes(), short_bytes_.size()) << what;
  }

  void restore_long() { write_bytes(file_of(kLong), long_bytes_); }

  // Rewrites the long file and gives it back its old modification time, as silent media
  // corruption would: the store cannot tell from the directory listing.
  void write_keeping_mtime(const std::vector<uint8_t>& bytes) {
    struct stat st {};
    ASSERT_EQ(::stat(file_of(kLong).c_str(), &st), 0);
    write_bytes(file_of(kLong), bytes);
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, file_of(kLong).c_str(), times, 0), 0);
  }

  std::vector<uint8_t> short_bytes_, long_bytes_;
};

TEST_F(KvDamageTest, UndamagedPicksTheLongEntry) {
  auto s = open();
  auto hit = get(*s, kPrompt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->key, kLong);
}

// One flipped byte in each region: fixed header fields, the usage block, the header checksum,
// the key, the snapshot envelope's header, tokens, state and checksum.
TEST_F(KvDamageTest, AFlippedByteAnywhereIsDetected) {
  const size_t key = kKvHeaderSize, payload = kKvHeaderSize + 15, end = long_bytes_.size();
  const std::vector<std::pair<std::string, size_t>> spots = {
      {"magic", 3},           {"version", 8},         {"fingerprint", 20},    {"mode flags", 48},
      {"n_tokens", 57},       {"context", 65},        {"key length", 80},     {"payload length", 89},
      {"key hash", 100},      {"hits", 128},          {"last used", 137},     {"header checksum", 150},
      {"key", key + 3},       {"snapshot magic", payload + 2},                {"snapshot mode", payload + 12},
      {"snapshot model", payload + 20},               {"snapshot tokens", payload + 60},
      {"snapshot state", payload + 300},              {"snapshot checksum", end - 5},
      {"last byte", end - 1},
  };
  for (const auto& [region, offset] : spots) {
    for (int variant = 0; variant < 3; ++variant) {
      const std::string what = region + " variant " + std::to_string(variant);
      std::vector<uint8_t> bad = long_bytes_;
      bad[offset] ^= 0x10;
      std::unique_ptr<KvStore> s;
      if (variant == 0) {  // damaged under a running store
        s = open();
        write_bytes(file_of(kLong), bad);
      } else if (variant == 1) {  // same, with the old modification time
        s = open();
        write_keeping_mtime(bad);
      } else {  // damaged while no store was running
        write_bytes(file_of(kLong), bad);
        s = open();
      }
      if (region == "version") {
        expect_foreign(*s, what);
      } else {
        expect_fallback(*s, what);
      }
      restore_long();
    }
  }
}

TEST_F(KvDamageTest, TruncationAtManyOffsetsIsDetected) {
  const size_t n = long_bytes_.size();
  for (size_t cut : {size_t{0}, size_t{1}, size_t{8}, size_t{12}, size_t{100}, size_t{143}, size_t{175},
                     size_t{176}, size_t{177}, size_t{190}, size_t{191}, size_t{192}, size_t{250}, n / 2,
                     n - 33, n - 32, n - 31, n - 1}) {
    for (bool live : {true, false}) {
      const std::string what = "cut at " + std::to_string(cut) + (live ? " live" : " restart");
      const std::vector<uint8_t> cut_bytes(long_bytes_.begin(), long_bytes_.begin() + cut);
      if (live) {
        auto s = open();
        write_bytes(file_of(kLong), cut_bytes);
        expect_fallback(*s, what);
      } else {
        write_bytes(file_of(kLong), cut_bytes);
        auto s = open();
        expect_fallback(*s, what);
      }
      restore_long();
    }
  }
  // Extended by a byte: the size no longer matches the header either.
  std::vector<uint8_t> longer = long_bytes_;
  longer.push_back(0);
  auto s = open();
  write_bytes(file_of(kLong), longer);
  expect_fallback(*s, "extended");
}

TEST_F(KvDamageTest, EmptyGarbageAndMisnamedFilesAreRemovedAtOpen) {
  write_bytes(dir_.path() / kv_file_name("empty"), {});
  std::vector<uint8_t> garbage(5000);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  write_bytes(dir_.path() / "garbage.dsv4kv", garbage);
  // A valid file under a name that is not its key's hash.
  write_bytes(dir_.path() / kv_file_name("some other key"), long_bytes_);
  auto s = open();
  const auto w = s->warnings();
  EXPECT_TRUE(any_contains(w, kv_file_name("empty") + ": KV cache header: truncated (0 of 176 bytes)"))
      << ::testing::PrintToString(w);
  EXPECT_TRUE(any_contains(w, "garbage.dsv4kv: KV cache header: bad magic")) << ::testing::PrintToString(w);
  EXPECT_TRUE(any_contains(w, "does not match the key's hash")) << ::testing::PrintToString(w);
  EXPECT_EQ(list_names(dir_.path()).size(), 2u);
  EXPECT_EQ(s->file_count(), 2u);
  auto hit = get(*s, kPrompt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->key, kLong);
}

TEST_F(KvDamageTest, OtherVersionsAndNonFilesAreLeftAlone) {
  std::vector<uint8_t> v2 = long_bytes_;
  v2[8] = 2;
  write_bytes(dir_.path() / kv_file_name("future"), v2);
  fs::create_directory(dir_.path() / kv_file_name("a directory"));
  fs::create_symlink(file_of(kLong), dir_.path() / kv_file_name("a link"));
  auto s = open();
  auto w = s->warnings();
  EXPECT_TRUE(any_contains(w, "format version 2 (this build reads 1); ignored")) << ::testing::PrintToString(w);
  EXPECT_TRUE(any_contains(w, kv_file_name("a directory") + ": not a regular file; ignored"));
  EXPECT_TRUE(any_contains(w, kv_file_name("a link") + ": not a regular file; ignored"));
  EXPECT_EQ(s->file_count(), 2u);
  EXPECT_TRUE(fs::exists(dir_.path() / kv_file_name("future")));
  EXPECT_TRUE(fs::is_directory(dir_.path() / kv_file_name("a directory")));
  EXPECT_TRUE(fs::is_symlink(dir_.path() / kv_file_name("a link")));
  // Warned once, not at every rescan.
  EXPECT_FALSE(get(*s, "no such prefix").has_value());
  EXPECT_TRUE(s->warnings().empty());
  EXPECT_TRUE(get(*s, kPrompt).has_value());
}

TEST_F(KvDamageTest, LeftoverTemporaryFilesAreRemovedAtOpen) {
  const std::string temp = "." + kv_file_name("x").substr(0, 64) + ".dsv4kv.tmp.12345.0";
  write_bytes(dir_.path() / temp, long_bytes_);
  auto s = open();
  EXPECT_TRUE(any_contains(s->warnings(), "removed leftover temporary file " + temp));
  EXPECT_FALSE(fs::exists(dir_.path() / temp));
  EXPECT_EQ(s->file_count(), 2u);
}

// A snapshot whose envelope disagrees with the header (a writer bug, or a file assembled by
// hand) is never returned.
TEST_F(KvDamageTest, PayloadThatDisagreesWithTheHeaderIsRejected) {
  auto s = open();
  const auto tokens = make_tokens(kLongTokens);
  for (const auto& [what, payload] : std::vector<std::pair<std::string, std::vector<uint8_t>>>{
           {"token count", fake_snapshot(fp_, mode_, kLongTokens + 1, 500)},
           {"model", fake_snapshot(fingerprint(9), mode_, kLongTokens, 500)},
           {"mode", fake_snapshot(fp_, engine::Mode::kPlain, kLongTokens, 500)},
           {"not a snapshot", std::vector<uint8_t>(700, 1)}}) {
    auto r = s->store(kLong, tokens, StoreReason::kManual, 4096, payload);
    ASSERT_TRUE(r.ok() && *r) << what;
    expect_fallback(*s, what);
  }
}

TEST_F(KvDamageTest, UnusableDirectoryIsAnErrorValue) {
  const fs::path file = dir_.path() / "plain-file";
  write_bytes(file, long_bytes_);
  KvStoreOptions o = options();
  o.dir = file.string();
  auto r = KvStore::open(o, fp_, kv_mode_flags(mode_));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("is not a directory"), std::string::npos) << r.error().message;
  o.dir = (file / "below").string();
  r = KvStore::open(o, fp_, kv_mode_flags(mode_));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot create directory"), std::string::npos) << r.error().message;
  o.dir = "/proc/dsv4-kv-cache";
  EXPECT_FALSE(KvStore::open(o, fp_, kv_mode_flags(mode_)).ok());
  o.dir.clear();
  EXPECT_FALSE(KvStore::open(o, fp_, kv_mode_flags(mode_)).ok());
}

// The directory disappears under a running store (replaced by a file): stores and lookups
// return errors, nothing crashes, and the entries come back with the directory.
TEST_F(KvDamageTest, VanishedDirectoryGivesErrors) {
  auto s = open();
  const fs::path moved = dir_.path().string() + ".moved";
  fs::rename(dir_.path(), moved);
  write_bytes(dir_.path(), long_bytes_);
  auto r = s->store("another key", make_tokens(20), StoreReason::kEvict, 4096, fake_snapshot(fp_, mode_, 20));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot create"), std::string::npos) << r.error().message;
  auto l = s->lookup("unknown prompt", 4096);
  EXPECT_FALSE(l.ok());
  fs::remove(dir_.path());
  fs::rename(moved, dir_.path());
  auto hit = get(*s, kPrompt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->key, kLong);
}

// A directory entry in the way of the final name: the rename fails, the temporary file goes.
TEST_F(KvDamageTest, FailedRenameLeavesNothingBehind) {
  fs::create_directory(file_of("blocked"));
  fs::create_directory(file_of("blocked") / "inside");
  auto s = open();
  (void)s->warnings();
  auto r = s->store("blocked", make_tokens(20), StoreReason::kEvict, 4096, fake_snapshot(fp_, mode_, 20));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("rename failed"), std::string::npos) << r.error().message;
  EXPECT_EQ(list_names(dir_.path()).size(), 3u);
  EXPECT_EQ(s->file_count(), 2u);
}

// A full disk, injected through the write seam at several points of the file: an error value
// naming the cause, no file left behind, the existing entries (including an older version of
// the same key) intact.
TEST_F(KvDamageTest, FullDiskLosesNothing) {
  for (size_t allowed : {size_t{0}, size_t{1}, size_t{100}, size_t{176}, size_t{180}, size_t{191}, size_t{500},
                         size_t{3000}}) {
    for (const std::string& key : {std::string("a new key"), std::string(kLong)}) {
      const std::string what = key + " after " + std::to_string(allowed) + " bytes";
      KvStoreOptions o = options();
      auto written = std::make_shared<size_t>(0);
      o.write = [written, allowed](int fd, const void* data, size_t size) -> ssize_t {
        if (*written >= allowed) {
          errno = ENOSPC;
          return -1;
        }
        const size_t n = std::min(size, allowed - *written);
        const ssize_t got = ::write(fd, data, n);
        if (got > 0) *written += static_cast<size_t>(got);
        return got;
      };
      auto s = open(o, fp_, mode_);
      const uint64_t total = s->total_bytes();
      auto r = s->store(key, make_tokens(40), StoreReason::kShutdown, 4096, fake_snapshot(fp_, mode_, 40, 4000));
      ASSERT_FALSE(r.ok()) << what;
      EXPECT_NE(r.error().message.find("No space left on device"), std::string::npos) << r.error().message;
      std::vector<std::string> want = {kv_file_name(kLong), kv_file_name(kShort)};
      std::sort(want.begin(), want.end());
      EXPECT_EQ(list_names(dir_.path()), want) << what;
      EXPECT_EQ(read_bytes(file_of(kLong)), long_bytes_) << what;
      EXPECT_EQ(s->total_bytes(), total) << what;
      auto hit = get(*s, kPrompt);
      ASSERT_TRUE(hit.has_value()) << what;
      EXPECT_EQ(hit->key, kLong) << what;
      EXPECT_EQ(hit->tokens.size(), kLongTokens) << what;
      restore_long();
    }
  }
}

}  // namespace
}  // namespace dsv4::server

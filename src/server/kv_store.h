// The disk KV cache (PROTOCOL.md §5.4–5.7, docs/KV_CACHE.md): engine snapshots stored under the
// typed text (§5.3) of their tokens, found again by the longest typed-text prefix of a prompt.
//
// A cache is a directory of `<sha256(key)>.dsv4kv` files (format: kv_store_format.h). The store
// keeps an index of their headers in memory (read at open; refreshed before a store and after a
// lookup miss, one stat per file plus a header read for new or changed files). Anything wrong
// with a file – truncated, corrupted anywhere, unreadable, garbage under the extension – is
// skipped with a warning (and removed where possible), never loaded; other files are unaffected.
// One directory belongs to one process at a time (leftover temporary files are removed at open).
//
// Thread-safe: several threads may look up while one stores. Payload reads and new-file writes
// run outside the index lock; header reads, usage rewrites, renames and deletions run under it,
// so a lookup never misjudges a header being rewritten or deletes a file that a concurrent store
// has just replaced.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "server/kv_store_format.h"
#include "util/status.h"

namespace dsv4::server {

enum class StoreReason : uint32_t { kCold = 1, kContinued = 2, kEvict = 3, kShutdown = 4, kManual = 5 };

// Mode flags (§5.6) of snapshots taken by an engine in `mode`: bit0 official, KV format 0 (f32),
// bit17 logits present (engine snapshots always carry them).
uint32_t kv_mode_flags(engine::Mode mode);

struct KvStoreOptions {
  std::string dir;                  // created with mode 0700 if missing
  uint64_t budget_bytes = 4096ull << 20;
  int64_t min_tokens = 512;
  int64_t cold_max_tokens = 30000;  // hits with more tokens are deleted after loading ("consumed")

  // Test seams, empty in production: the clock (unix seconds) and the write(2) used for new cache
  // files (a test makes it fail as a full disk would).
  std::function<int64_t()> clock;
  std::function<ssize_t(int fd, const void* data, size_t size)> write;
};

struct KvHit {
  std::string key;                  // the stored typed text (a prefix of the prompt's typed text)
  std::vector<int32_t> tokens;
  std::vector<uint8_t> snapshot;    // engine snapshot bytes, verified (checksum, token count)
  std::string file;
};

class KvStore {
 public:
  // fingerprint: Engine::fingerprint(); mode_flags per §5.6 (kv_mode_flags). Errors: the
  // directory cannot be created or written. Evicts down to the budget.
  static Result<std::unique_ptr<KvStore>> open(const KvStoreOptions& options,
                                               const std::array<uint8_t, 32>& fingerprint,
                                               uint32_t mode_flags);

  // Atomic write (temporary name, fsync, rename); skipped (returns false) when shorter than
  // min_tokens or when the file would exceed the budget (§5.7 with 1 % slack); then evicts until
  // the total fits (§5.7 scoring; the file just written protected unless it alone exceeds the
  // budget). A file with the same key is replaced. On a write error (full disk, unwritable
  // directory) nothing is left behind and the other files are untouched. The snapshot is not
  // decoded here (it is verified when looked up).
  Result<bool> store(std::string_view key_typed_text, std::span<const int32_t> tokens, StoreReason reason,
                     int64_t n_ctx, std::span<const uint8_t> snapshot);

  // Longest stored key that is a prefix of prompt_typed_text (ties: more tokens), skipping other
  // fingerprints/modes, < min_tokens, or written with a larger context than n_ctx. A corrupt,
  // truncated or unreadable file is skipped with a warning (and removed), never loaded; never a
  // crash. On a hit, updates hits/last_used in place, or deletes the file when tokens >
  // cold_max_tokens. nullopt on a miss; an error only when the directory cannot be listed.
  Result<std::optional<KvHit>> lookup(std::string_view prompt_typed_text, int64_t n_ctx);

  // Bytes of the cache files in the index (every fingerprint and mode: the budget is the
  // directory's).
  uint64_t total_bytes() const;
  // Number of cache files in the index.
  size_t file_count() const;
  // Drained by the caller for its log: "<file path>: <what is wrong>; <what was done>".
  std::vector<std::string> warnings();

 private:
  // Identifies one version of a file: a rewrite or replacement changes it.
  struct FileStamp {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    auto operator<=>(const FileStamp&) const = default;
  };
  struct Entry {
    KvFileHeader header;
    FileStamp stamp;
  };
  struct Candidate {
    std::string name;
    Entry entry;
  };
  // kSkip: vanished, changed since indexed, or not a match after all (not the file's fault);
  // kForeign: another format version (left alone); kBad: damaged.
  enum class LoadOutcome { kHit, kSkip, kForeign, kBad };

  KvStore(KvStoreOptions options, const std::array<uint8_t, 32>& fingerprint, uint32_t mode_flags);

  static FileStamp stamp_of(const struct stat& st);
  int64_t now() const;
  std::string path_of(const std::string& name) const;
  void warn_locked(std::string message);
  // "_locked": called with mu_ held.
  // Brings the index in line with the directory, dropping bad files.
  Status rescan_locked();
  void remove_temporaries_locked();
  // Deletes files until the total fits the budget; `keep` is protected unless it alone exceeds it.
  void evict_locked(const std::string& keep);
  // Warns and removes a bad file if it is still the version that was judged; false when it
  // could not be removed (the caller then ignores it).
  bool discard_locked(const std::string& name, const FileStamp& judged, const std::string& why);
  std::vector<Candidate> candidates_locked(std::string_view prompt, int64_t n_ctx) const;
  // Reads and verifies one candidate (the header under mu_, key and payload without). `seen` is
  // the version of the file that was read (on kHit and kBad); `problem` says what is wrong on kBad.
  LoadOutcome load(const Candidate& c, std::string_view prompt, KvHit& hit, Entry& seen,
                   std::string& problem) const;
  // Consumes the file or rewrites its usage block, if it is still the version `seen`.
  void after_hit_locked(const std::string& name, const Entry& seen);
  // Inserts or replaces an index entry, keeping total_bytes_ in step.
  void set_entry_locked(const std::string& name, const Entry& entry);
  void erase_entry_locked(const std::string& name);

  const KvStoreOptions options_;
  const std::array<uint8_t, 32> fingerprint_;
  const uint32_t mode_flags_;

  mutable std::mutex mu_;
  std::map<std::string, Entry> index_;         // by file name
  std::map<std::string, FileStamp> ignored_;   // files warned about and kept (other version, not a file)
  uint64_t total_bytes_ = 0;
  std::atomic<uint64_t> temp_counter_{0};
  std::vector<std::string> warnings_;
};

}  // namespace dsv4::server

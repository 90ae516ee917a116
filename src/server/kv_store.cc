#include "server/kv_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <set>
#include <utility>

#include "engine/snapshot.h"
#include "server/kv_store_budget.h"
#include "util/sha256.h"

namespace dsv4::server {
namespace {

using WriteFn = std::function<ssize_t(int, const void*, size_t)>;

// Temporary files (".<name>.tmp.<pid>.<n>") contain this; a scan never mistakes them for entries.
constexpr std::string_view kTempMarker = ".dsv4kv.tmp.";

std::string errno_text() { return std::strerror(errno); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Status read_exact(int fd, uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("read failed: " + errno_text());
    }
    if (n == 0) return make_error("unexpected end of file at byte " + std::to_string(offset + done));
    done += static_cast<size_t>(n);
  }
  return Status();
}

Status write_all(int fd, std::span<const uint8_t> bytes, const WriteFn& write) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write ? write(fd, bytes.data() + done, bytes.size() - done)
                            : ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("write failed: " + errno_text());
    }
    if (n == 0) return make_error("write failed: no progress");
    done += static_cast<size_t>(n);
  }
  return Status();
}

// Creates `path` (which must not exist) with mode 0600 and writes the parts; on any failure the
// file is removed, so a full disk leaves nothing behind.
Status write_new_file(const std::string& path, std::initializer_list<std::span<const uint8_t>> parts,
                      const WriteFn& write) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return make_error(path + ": cannot create: " + errno_text());
  Status s;
  for (std::span<const uint8_t> part : parts) {
    s = write_all(fd.get(), part, write);
    if (!s.ok()) break;
  }
  if (s.ok() && ::fsync(fd.get()) != 0) s = make_error("fsync failed: " + errno_text());
  if (::close(fd.release()) != 0 && s.ok()) s = make_error("close failed: " + errno_text());
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s.error().with_context(path);
  }
  return Status();
}

void fsync_directory(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // Durability of the rename only; the cache stays consistent without it.
  if (fd.get() >= 0) (void)::fsync(fd.get());
}

struct ScannedFile {
  std::string name;
  struct stat st;
};

// Regular files, links and others whose names satisfy `keep`; nullopt when the directory
// cannot be listed.
std::optional<std::vector<ScannedFile>> list_directory(const std::string& dir, bool (*keep)(std::string_view)) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return std::nullopt;
  std::vector<ScannedFile> out;
  while (const dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (!keep(name)) continue;
    ScannedFile f{std::string(name), {}};
    if (::fstatat(::dirfd(d), e->d_name, &f.st, AT_SYMLINK_NOFOLLOW) == 0) out.push_back(std::move(f));
  }
  ::closedir(d);
  return out;
}

bool is_temporary(std::string_view name) { return name.find(kTempMarker) != std::string_view::npos; }
bool is_cache_file(std::string_view name) { return name.ends_with(kKvFileExtension) && !is_temporary(name); }

struct HeaderVerdict {
  enum Kind { kValid, kForeign, kBad } kind = kBad;
  KvFileHeader header;
  std::string problem;  // kForeign and kBad
};

// Reads and judges the header of the open cache file `name` of `size` bytes. Another version is
// foreign (left alone: a newer build may own it), anything else wrong is damage.
HeaderVerdict read_header(int fd, uint64_t size, const std::string& name) {
  HeaderVerdict v;
  std::array<uint8_t, kKvHeaderSize> raw{};
  const std::span<uint8_t> head = std::span(raw).first(std::min<uint64_t>(raw.size(), size));
  if (Status s = read_exact(fd, 0, head); !s.ok()) {
    v.problem = s.message();
    return v;
  }
  if (std::optional<uint32_t> version = kv_file_version(head); version && *version != kKvFileVersion) {
    v.kind = HeaderVerdict::kForeign;
    v.problem = "format version " + std::to_string(*version) + " (this build reads " +
                std::to_string(kKvFileVersion) + "); ignored";
    return v;
  }
  Result<KvFileHeader> h = decode_kv_header(head);
  if (!h.ok()) {
    v.problem = h.error().message;
  } else if (kv_file_name(h->key_sha256) != name) {
    v.problem = "file name does not match the key's hash";
  } else if (h->file_bytes() != size) {
    v.problem = "file is " + std::to_string(size) + " bytes, its header describes " +
                std::to_string(h->file_bytes()) + " (truncated or damaged)";
  } else {
    v.kind = HeaderVerdict::kValid;
    v.header = *h;
  }
  return v;
}

}  // namespace

uint32_t kv_mode_flags(engine::Mode mode) {
  constexpr uint32_t kOfficial = 1u << 0;
  constexpr uint32_t kLogitsPresent = 1u << 17;
  return (mode == engine::Mode::kOfficial ? kOfficial : 0u) | kLogitsPresent;
}

KvStore::KvStore(KvStoreOptions options, const std::array<uint8_t, 32>& fingerprint, uint32_t mode_flags)
    : options_(std::move(options)), fingerprint_(fingerprint), mode_flags_(mode_flags) {}

Result<std::unique_ptr<KvStore>> KvStore::open(const KvStoreOptions& options,
                                               const std::array<uint8_t, 32>& fingerprint,
                                               uint32_t mode_flags) {
  if (options.dir.empty()) return make_error("KV cache: no directory given");
  const std::string& dir = options.dir;
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error("KV cache: cannot create directory " + dir + ": " + errno_text());
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return make_error("KV cache: cannot access " + dir + ": " + errno_text());
  if (!S_ISDIR(st.st_mode)) return make_error("KV cache: " + dir + " is not a directory");
  const std::string probe = dir + "/.probe" + std::string(kTempMarker) + std::to_string(getpid());
  Status writable = write_new_file(probe, {}, nullptr);
  if (!writable.ok()) return make_error("KV cache: directory " + dir + " is not writable: " + writable.message());
  ::unlink(probe.c_str());

  std::unique_ptr<KvStore> store(new KvStore(options, fingerprint, mode_flags));
  std::lock_guard<std::mutex> lock(store->mu_);
  store->remove_temporaries_locked();
  DSV4_TRY(store->rescan_locked());
  store->evict_locked("");
  return store;
}

int64_t KvStore::now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

KvStore::FileStamp KvStore::stamp_of(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

std::string KvStore::path_of(const std::string& name) const { return options_.dir + "/" + name; }

void KvStore::warn_locked(std::string message) { warnings_.push_back(std::move(message)); }

void KvStore::remove_temporaries_locked() {
  std::optional<std::vector<ScannedFile>> files = list_directory(options_.dir, is_temporary);
  if (!files) return;
  for (const ScannedFile& f : *files) {
    if (::unlink(path_of(f.name).c_str()) == 0) warn_locked("removed leftover temporary file " + f.name);
  }
}

Status KvStore::rescan_locked() {
  std::optional<std::vector<ScannedFile>> files = list_directory(options_.dir, is_cache_file);
  if (!files) return make_error("KV cache: cannot list " + options_.dir + ": " + errno_text());
  std::map<std::string, Entry> fresh;
  std::map<std::string, FileStamp> still_ignored;
  uint64_t total = 0;
  for (const ScannedFile& f : *files) {
    const FileStamp stamp = stamp_of(f.st);
    if (auto it = ignored_.find(f.name); it != ignored_.end() && it->second == stamp) {
      still_ignored.emplace(f.name, stamp);
      continue;
    }
    if (auto it = index_.find(f.name); it != index_.end() && it->second.stamp == stamp) {
      fresh.emplace(f.name, it->second);
      total += stamp.size;
      continue;
    }
    const std::string path = path_of(f.name);
    if (!S_ISREG(f.st.st_mode)) {
      warn_locked(path + ": not a regular file; ignored");
      still_ignored.emplace(f.name, stamp);
      continue;
    }
    HeaderVerdict verdict;
    {
      Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (fd.get() < 0) {
        if (errno == ENOENT) continue;  // deleted since the listing
        verdict.problem = "cannot open: " + errno_text();
      } else {
        verdict = read_header(fd.get(), stamp.size, f.name);
      }
    }
    if (verdict.kind == HeaderVerdict::kValid) {
      fresh.emplace(f.name, Entry{verdict.header, stamp});
      total += stamp.size;
      continue;
    }
    if (verdict.kind == HeaderVerdict::kForeign) {
      warn_locked(path + ": " + verdict.problem);
      still_ignored.emplace(f.name, stamp);
      continue;
    }
    const std::string& problem = verdict.problem;
    if (!discard_locked(f.name, stamp, problem)) still_ignored.emplace(f.name, stamp);
  }
  index_ = std::move(fresh);
  ignored_ = std::move(still_ignored);
  total_bytes_ = total;
  return Status();
}

bool KvStore::discard_locked(const std::string& name, const FileStamp& judged, const std::string& why) {
  const std::string path = path_of(name);
  erase_entry_locked(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    warn_locked(path + ": " + why + "; skipped");
    return true;
  }
  if (!(stamp_of(st) == judged)) {
    warn_locked(path + ": " + why + "; skipped (the file has since been replaced)");
    return true;
  }
  if (::unlink(path.c_str()) != 0) {
    warn_locked(path + ": " + why + "; skipped, and it could not be removed: " + errno_text());
    return false;
  }
  warn_locked(path + ": " + why + "; skipped and removed");
  return true;
}

void KvStore::evict_locked(const std::string& keep) {
  while (total_bytes_ > options_.budget_bytes) {
    std::vector<std::string> names;
    std::vector<KvEvictionCandidate> files;
    std::optional<size_t> protected_index;
    for (const auto& [name, e] : index_) {
      if (name == keep && e.stamp.size <= options_.budget_bytes) protected_index = names.size();
      names.push_back(name);
      files.push_back({e.stamp.size, e.header.n_tokens, e.header.hits, e.header.last_used});
    }
    const std::optional<size_t> victim = kv_eviction_victim(files, now(), protected_index);
    if (!victim) return;
    const std::string& name = names[*victim];
    const FileStamp stamp = index_.at(name).stamp;
    erase_entry_locked(name);
    if (::unlink(path_of(name).c_str()) != 0 && errno != ENOENT) {
      // Left out of the total from now on: retrying every store would not make it removable.
      warn_locked(path_of(name) + ": cannot evict: " + errno_text());
      ignored_.emplace(name, stamp);
    }
  }
}

std::vector<KvStore::Candidate> KvStore::candidates_locked(std::string_view prompt, int64_t n_ctx) const {
  std::vector<Candidate> out;
  for (const auto& [name, e] : index_) {
    const KvFileHeader& h = e.header;
    if (h.fingerprint != fingerprint_ || h.mode_flags != mode_flags_) continue;
    if (h.n_tokens < static_cast<uint64_t>(std::max<int64_t>(options_.min_tokens, 1))) continue;
    if (n_ctx < 0 || h.n_ctx > static_cast<uint64_t>(n_ctx) || h.key_bytes > prompt.size()) continue;
    out.push_back({name, e});
  }
  // Longest key first; among equal keys (not possible in one directory, kept for clarity of the
  // rule) more tokens first.
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    if (a.entry.header.key_bytes != b.entry.header.key_bytes) {
      return a.entry.header.key_bytes > b.entry.header.key_bytes;
    }
    return a.entry.header.n_tokens > b.entry.header.n_tokens;
  });
  return out;
}

KvStore::LoadOutcome KvStore::load(const Candidate& c, std::string_view prompt, KvHit& hit, Entry& seen,
                                   std::string& problem) const {
  const std::string path = path_of(c.name);
  // The header is read under the lock: hits rewrite its usage block in place (under the lock), and
  // a read torn by such a rewrite would look like corruption.
  std::unique_lock<std::mutex> lock(mu_);
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ENOENT) return LoadOutcome::kSkip;
    problem = "cannot open: " + errno_text();
    seen.stamp = c.entry.stamp;
    return LoadOutcome::kBad;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return LoadOutcome::kSkip;
  seen.stamp = stamp_of(st);

  // Everything is checked again on the bytes read now: the index only chose the candidate.
  const HeaderVerdict verdict = read_header(fd.get(), seen.stamp.size, c.name);
  if (verdict.kind != HeaderVerdict::kValid) {
    problem = verdict.problem;
    return verdict.kind == HeaderVerdict::kForeign ? LoadOutcome::kForeign : LoadOutcome::kBad;
  }
  const KvFileHeader& got = verdict.header;
  const KvFileHeader& want = c.entry.header;
  if (got.fingerprint != want.fingerprint || got.mode_flags != want.mode_flags || got.n_tokens != want.n_tokens ||
      got.n_ctx != want.n_ctx || got.key_bytes != want.key_bytes || got.key_sha256 != want.key_sha256) {
    return LoadOutcome::kSkip;  // replaced by another entry of the same key: judged after a rescan
  }
  seen.header = got;
  lock.unlock();
  const KvFileHeader& h = seen.header;

  hit.key.resize(h.key_bytes);
  if (Status s = read_exact(fd.get(), kKvHeaderSize,
                            std::span(reinterpret_cast<uint8_t*>(hit.key.data()), hit.key.size()));
      !s.ok()) {
    problem = s.message();
    return LoadOutcome::kBad;
  }
  if (sha256(as_bytes(hit.key)) != h.key_sha256) {
    problem = "key does not match its checksum (corrupted)";
    return LoadOutcome::kBad;
  }
  if (prompt.substr(0, hit.key.size()) != hit.key) return LoadOutcome::kSkip;

  hit.snapshot.resize(h.payload_bytes);
  if (Status s = read_exact(fd.get(), kKvHeaderSize + h.key_bytes, hit.snapshot); !s.ok()) {
    problem = s.message();
    return LoadOutcome::kBad;
  }
  Result<engine::SnapshotContents> snap = engine::decode_snapshot(hit.snapshot);
  if (!snap.ok()) {
    problem = "payload: " + snap.error().message;
    return LoadOutcome::kBad;
  }
  const engine::Mode mode = (mode_flags_ & 1u) != 0 ? engine::Mode::kOfficial : engine::Mode::kPlain;
  if (snap->model != fingerprint_ || snap->mode != mode) {
    problem = "payload: snapshot of another model or mode than its header says";
    return LoadOutcome::kBad;
  }
  if (snap->tokens.size() != h.n_tokens) {
    problem = "payload: snapshot holds " + std::to_string(snap->tokens.size()) + " tokens, the header says " +
              std::to_string(h.n_tokens);
    return LoadOutcome::kBad;
  }
  hit.tokens = std::move(snap->tokens);
  hit.file = path;
  return LoadOutcome::kHit;
}

void KvStore::set_entry_locked(const std::string& name, const Entry& entry) {
  erase_entry_locked(name);
  index_.emplace(name, entry);
  total_bytes_ += entry.stamp.size;
}

void KvStore::erase_entry_locked(const std::string& name) {
  if (auto it = index_.find(name); it != index_.end()) {
    total_bytes_ -= it->second.stamp.size;
    index_.erase(it);
  }
}

void KvStore::after_hit_locked(const std::string& name, const Entry& seen) {
  const std::string path = path_of(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !(stamp_of(st) == seen.stamp)) return;  // replaced meanwhile
  if (seen.header.n_tokens > static_cast<uint64_t>(std::max<int64_t>(options_.cold_max_tokens, 0))) {
    erase_entry_locked(name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      warn_locked(path + ": cannot delete the consumed entry: " + errno_text());
    }
    return;
  }
  Entry updated = seen;
  if (updated.header.hits != UINT32_MAX) ++updated.header.hits;
  updated.header.last_used = now();
  const std::array<uint8_t, kKvHeaderSize> raw = encode_kv_header(updated.header);
  const size_t usage_bytes = kKvHeaderSize - kKvUsageOffset;
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0 ||
      ::pwrite(fd.get(), raw.data() + kKvUsageOffset, usage_bytes, kKvUsageOffset) !=
          static_cast<ssize_t>(usage_bytes) ||
      ::fstat(fd.get(), &st) != 0) {
    // A failed rewrite leaves the old usage block or, if cut short, a header that fails its
    // checksum and is dropped at the next scan: the cache stays consistent either way.
    warn_locked(path + ": cannot update hits/last used: " + errno_text());
    return;
  }
  updated.stamp = stamp_of(st);
  set_entry_locked(name, updated);
}

Result<std::optional<KvHit>> KvStore::lookup(std::string_view prompt, int64_t n_ctx) {
  std::set<std::pair<std::string, FileStamp>> tried;
  // A miss against the index is checked once more against the directory as it is now.
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<Candidate> candidates;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pass == 1) DSV4_TRY(rescan_locked());
      candidates = candidates_locked(prompt, n_ctx);
    }
    std::erase_if(candidates, [&](const Candidate& c) { return tried.contains({c.name, c.entry.stamp}); });
    if (candidates.empty()) continue;

    // The SHA-256 of every candidate key length's prompt prefix, in one pass over the prompt.
    std::vector<uint64_t> lengths;
    for (const Candidate& c : candidates) lengths.push_back(c.entry.header.key_bytes);
    std::sort(lengths.begin(), lengths.end());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
    std::map<uint64_t, std::array<uint8_t, 32>> prefix_digest;
    Sha256 running;
    uint64_t hashed = 0;
    for (uint64_t length : lengths) {
      running.update(as_bytes(prompt.substr(hashed, length - hashed)));
      hashed = length;
      Sha256 at_length = running;
      prefix_digest[length] = at_length.finish();
    }

    for (const Candidate& c : candidates) {
      tried.insert({c.name, c.entry.stamp});
      if (prefix_digest.at(c.entry.header.key_bytes) != c.entry.header.key_sha256) continue;
      KvHit hit;
      Entry seen;
      std::string problem;
      const LoadOutcome outcome = load(c, prompt, hit, seen, problem);
      std::lock_guard<std::mutex> lock(mu_);
      if (outcome == LoadOutcome::kHit) {
        after_hit_locked(c.name, seen);
        return std::optional<KvHit>(std::move(hit));
      }
      if (outcome == LoadOutcome::kForeign) {
        warn_locked(path_of(c.name) + ": " + problem);
        erase_entry_locked(c.name);
        ignored_.emplace(c.name, seen.stamp);
      } else if (outcome == LoadOutcome::kBad && !discard_locked(c.name, seen.stamp, problem)) {
        ignored_.emplace(c.name, seen.stamp);
      }
    }
  }
  return std::optional<KvHit>();
}

Result<bool> KvStore::store(std::string_view key, std::span<const int32_t> tokens, StoreReason reason,
                            int64_t n_ctx, std::span<const uint8_t> snapshot) {
  if (tokens.empty() || static_cast<int64_t>(tokens.size()) < options_.min_tokens) return false;
  KvFileHeader h;
  h.fingerprint = fingerprint_;
  h.mode_flags = mode_flags_;
  h.reason = static_cast<uint32_t>(reason);
  h.n_tokens = tokens.size();
  h.n_ctx = static_cast<uint64_t>(std::max<int64_t>(n_ctx, 0));
  h.created = now();
  h.last_used = h.created;
  h.key_bytes = key.size();
  h.payload_bytes = snapshot.size();
  h.key_sha256 = sha256(as_bytes(key));
  const std::string name = kv_file_name(h.key_sha256);
  const std::string path = path_of(name);
  if (!kv_fits_budget(h.file_bytes(), options_.budget_bytes)) {
    std::lock_guard<std::mutex> lock(mu_);
    warn_locked("store of " + std::to_string(h.n_tokens) + " tokens skipped: " + std::to_string(h.file_bytes()) +
                " bytes (+1 % slack) exceed the budget of " + std::to_string(options_.budget_bytes));
    return false;
  }

  const std::string temp = options_.dir + "/." + name.substr(0, name.size() - kKvFileExtension.size()) +
                           std::string(kTempMarker) + std::to_string(getpid()) + "." +
                           std::to_string(temp_counter_.fetch_add(1));
  const std::array<uint8_t, kKvHeaderSize> header = encode_kv_header(h);
  if (Status s = write_new_file(temp, {header, as_bytes(key), snapshot}, options_.write); !s.ok()) {
    return s.error().with_context("KV cache: cannot store " + std::to_string(h.n_tokens) + " tokens");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string err = errno_text();
    ::unlink(temp.c_str());
    return make_error("KV cache: cannot store " + path + ": rename failed: " + err);
  }
  fsync_directory(options_.dir);
  if (Status s = rescan_locked(); !s.ok()) warn_locked(s.message());
  evict_locked(name);
  return true;
}

uint64_t KvStore::total_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_bytes_;
}

size_t KvStore::file_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

std::vector<std::string> KvStore::warnings() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(warnings_, {});
}

}  // namespace dsv4::server

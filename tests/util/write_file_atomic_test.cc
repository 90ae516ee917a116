// write_file_atomic: a reader sees the old file or a whole new one, never a mix, even with
// concurrent writers of one path; failures leave no temporary file behind.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "util/mapped_file.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const char* name) {
  const fs::path dir = fs::temp_directory_path() / (std::string("dsv4-atomic-") + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(WriteFileAtomic, ConcurrentWritersOfOnePathLeaveOneWholeFile) {
  const fs::path dir = fresh_dir("concurrent");
  const std::string path = (dir / "state.bin").string();
  constexpr int kWriters = 8;
  constexpr size_t kBytes = 1 << 20;
  std::vector<std::thread> threads;
  std::vector<Status> results(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      const std::vector<uint8_t> bytes(kBytes, static_cast<uint8_t>('a' + w));
      for (int round = 0; round < 4 && results[w].ok(); ++round) results[w] = write_file_atomic(path, bytes);
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : results) EXPECT_TRUE(s.ok()) << s.message();
  auto file = MappedFile::open(path);
  ASSERT_TRUE(file.ok());
  const std::span<const uint8_t> got = file->bytes();
  ASSERT_EQ(got.size(), kBytes);
  for (uint8_t b : got) ASSERT_EQ(b, got[0]) << "bytes of two writers mixed";
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1) << "a temporary file was left";
  fs::remove_all(dir);
}

TEST(WriteFileAtomic, MissingDirectoryIsAnErrorNamingThePath) {
  const fs::path dir = fresh_dir("missing");
  const std::string path = (dir / "no" / "such" / "file").string();
  const std::vector<uint8_t> bytes(16, 1);
  const Status s = write_file_atomic(path, bytes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  fs::remove_all(dir);
}

TEST(WriteFileAtomic, FailedRenameLeavesNoTemporaryFile) {
  const fs::path dir = fresh_dir("rename");
  const fs::path target = dir / "target";
  fs::create_directories(target / "occupied");  // rename onto a non-empty directory fails
  const std::vector<uint8_t> bytes(16, 1);
  const Status s = write_file_atomic(target.string(), bytes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rename"), std::string::npos) << s.message();
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv4

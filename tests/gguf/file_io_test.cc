// Writer::write and File::open against the real file system, including I/O failures.
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "gguf_test_util.h"

namespace dsv4::gguf {
namespace {

namespace fs = std::filesystem;
using testing::pattern;

class GgufFileIo : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "gguf_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(GgufFileIo, WriteThenOpen) {
  Writer w;
  w.set("general.alignment", Value::make_u32(64));
  w.set("general.name", Value::make_string("tiny"));
  ASSERT_TRUE(w.add_tensor("held", TensorType::Q8_0, {32, 3}, pattern(102, 1)).ok());
  int calls = 0;
  ASSERT_TRUE(w.add_generated_tensor("gen", TensorType::Q4_K, {256, 2, 2},
                                     [&](uint8_t* dst, uint64_t n) {
                                       ++calls;
                                       const auto p = pattern(n, 2);
                                       std::copy(p.begin(), p.end(), dst);
                                     })
                  .ok());
  ASSERT_TRUE(w.add_generated_tensor("small", TensorType::F32, {3},
                                     [&](uint8_t* dst, uint64_t n) {
                                       ++calls;
                                       ASSERT_EQ(n, 12u);
                                       const auto p = pattern(n, 3);
                                       std::copy(p.begin(), p.end(), dst);
                                     })
                  .ok());
  const std::string p = path("model.gguf");
  const Status st = w.write(p);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  auto opened = File::open(p);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  File f = std::move(opened).value();
  EXPECT_EQ(f.label(), p);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(*f.find("general.name")->as_string(), "tiny");
  ASSERT_EQ(f.tensors().size(), 3u);
  const TensorInfo* held = f.tensor("held");
  const TensorInfo* gen = f.tensor("gen");
  const TensorInfo* small = f.tensor("small");
  ASSERT_TRUE(held && gen && small);
  EXPECT_EQ(std::vector<uint8_t>(held->data, held->data + held->size), pattern(102, 1));
  EXPECT_EQ(std::vector<uint8_t>(gen->data, gen->data + gen->size), pattern(2 * 2 * 144, 2));
  EXPECT_EQ(std::vector<uint8_t>(small->data, small->data + small->size), pattern(12, 3));
  EXPECT_EQ(gen->offset % 64, 0u);

  // Streaming and in-memory paths produce the same bytes.
  const std::vector<uint8_t> mem = w.serialize();
  ASSERT_EQ(f.file_size(), mem.size());
  EXPECT_TRUE(std::equal(mem.begin(), mem.end(), f.header_bytes().data()));

  // A copy shares the mapping, so it stays readable after the original is gone.
  File copy = f;
  f = File();
  EXPECT_EQ(copy.tensor("small")->data[0], pattern(12, 3)[0]);
}

TEST_F(GgufFileIo, WriteReplacesExistingFile) {
  const std::string p = path("model.gguf");
  Writer a;
  a.set("v", Value::make_u32(1));
  ASSERT_TRUE(a.write(p).ok());
  Writer b;
  b.set("v", Value::make_u32(2));
  ASSERT_TRUE(b.write(p).ok());
  auto f = File::open(p);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->find("v")->as_uint(), 2u);
}

TEST_F(GgufFileIo, OpenMissingFile) {
  auto f = File::open(path("nope.gguf"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find(path("nope.gguf")), std::string::npos);
  EXPECT_NE(f.error().message.find("No such file"), std::string::npos) << f.error().message;
}

TEST_F(GgufFileIo, OpenDirectory) {
  auto f = File::open(dir_.string());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find(dir_.string()), std::string::npos);
  EXPECT_NE(f.error().message.find("not a regular file"), std::string::npos)
      << f.error().message;
}

TEST_F(GgufFileIo, OpenEmptyFile) {
  const std::string p = path("empty.gguf");
  { std::FILE* fp = std::fopen(p.c_str(), "wb"); ASSERT_NE(fp, nullptr); std::fclose(fp); }
  auto f = File::open(p);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().message, p + ": file of 0 bytes is too small for a GGUF header (24 bytes)");
}

TEST_F(GgufFileIo, WriteIntoMissingDirectoryFails) {
  Writer w;
  const std::string p = path("no/such/dir/model.gguf");
  const Status st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("model.gguf.tmp"), std::string::npos) << st.message();
}

TEST_F(GgufFileIo, RenameFailureRemovesTemporary) {
  // The destination is a non-empty directory: rename() fails after the data was written.
  const std::string p = path("occupied");
  fs::create_directories(fs::path(p) / "child");
  Writer w;
  ASSERT_TRUE(w.add_tensor("t", TensorType::F32, {4}, pattern(16, 1)).ok());
  const Status st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rename"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_TRUE(fs::is_directory(p));
}

TEST_F(GgufFileIo, WriteErrorMidStreamRemovesTemporary) {
  // A file size limit makes write() fail with EFBIG part way through the tensor data.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &old), 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);

  Writer w;
  int calls = 0;
  (void)w.add_generated_tensor("big", TensorType::F32, {16384},
                               [&](uint8_t*, uint64_t) { ++calls; });
  const std::string p = path("big.gguf");
  const Status st = w.write(p);

  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &old, nullptr), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("write failed"), std::string::npos) << st.message();
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(GgufFileIo, InvalidMetadataIsAWriteError) {
  const std::string p = path("bad.gguf");
  Writer w;
  w.set("general.alignment", Value::make_u64(64));
  Status st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("general.alignment"), std::string::npos) << st.message();

  w.set("general.alignment", Value::make_u32(48));
  st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("48"), std::string::npos) << st.message();

  w.set("general.alignment", Value::make_u32(16));
  w.set("k.u8", testing::scalar(ValueType::U8, 300));
  st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("key 'k.u8'"), std::string::npos) << st.message();

  w.set("k.u8", Value::make_int_array(ValueType::U64, {-1}));
  st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("element 0"), std::string::npos) << st.message();

  Value nested = Value::make_int_array(ValueType::U8, {});
  nested.element_type = ValueType::ARRAY;
  w.set("k.u8", nested);
  st = w.write(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("nested"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

}  // namespace
}  // namespace dsv4::gguf

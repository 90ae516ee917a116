// The bounded hand-over between the engine worker and a connection thread.
#include "server/response_channel.h"

#include <gtest/gtest.h>

#include <thread>

namespace dsv4::server {
namespace {

using namespace std::chrono_literals;

TEST(ResponseChannel, DeliversBytesInOrderThenClosed) {
  ResponseChannel ch(64);
  ASSERT_TRUE(ch.write("ab", 0ms));
  ASSERT_TRUE(ch.write("cd", 0ms));
  std::string out;
  EXPECT_EQ(ch.read(out, 0ms), ResponseChannel::Read::kData);
  EXPECT_EQ(out, "abcd");
  EXPECT_EQ(ch.read(out, 0ms), ResponseChannel::Read::kTimeout);
  ch.close(503);
  EXPECT_EQ(ch.read(out, 0ms), ResponseChannel::Read::kClosed);
  EXPECT_EQ(ch.status(), 503);
  EXPECT_FALSE(ch.write("late", 0ms));
}

TEST(ResponseChannel, BytesWrittenBeforeCloseAreStillRead) {
  ResponseChannel ch(64);
  ASSERT_TRUE(ch.write("body", 0ms));
  ch.close(200);
  std::string out;
  EXPECT_EQ(ch.read(out, 0ms), ResponseChannel::Read::kData);
  EXPECT_EQ(ch.read(out, 0ms), ResponseChannel::Read::kClosed);
  EXPECT_EQ(out, "body");
}

TEST(ResponseChannel, AFullChannelStallsTheWriterUntilRead) {
  ResponseChannel ch(4);
  ASSERT_TRUE(ch.write("12345", 0ms));   // one write may exceed the bound
  EXPECT_FALSE(ch.write("6", 1ms));      // full: the reader never came
  std::thread reader([&] {
    std::string out;
    while (out.size() < 5) ch.read(out, 1000ms);
  });
  EXPECT_TRUE(ch.write("6", 10000ms));   // room once the reader took the first bytes
  reader.join();
}

TEST(ResponseChannel, AbandonWakesAWaitingWriter) {
  ResponseChannel ch(1);
  ASSERT_TRUE(ch.write("x", 0ms));
  std::thread consumer([&] { ch.abandon(); });
  EXPECT_FALSE(ch.write("y", 60000ms));  // returns when abandoned, long before the limit
  consumer.join();
  EXPECT_TRUE(ch.abandoned());
}

}  // namespace
}  // namespace dsv4::server

#include "server/sse.h"

#include <gtest/gtest.h>

#include "server/sse_frames.h"

namespace dsv4::server {
namespace {

using chat::Json;
using api_testing::parse_sse;

TEST(Sse, FramesAreExact) {
  Json v = Json::object();
  v["b"] = 1;
  v["a"] = "x";
  EXPECT_EQ(sse_data(v), "data: {\"b\":1,\"a\":\"x\"}\n\n");
  EXPECT_EQ(sse_event("message_stop", Json{{"type", "message_stop"}}),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(sse_prefill_comment(), ": prefill\n\n");
}

TEST(Sse, WireJsonKeepsOrderAndUtf8) {
  Json v = Json::object();
  v["z"] = "héllo ｜DSML｜ \n\t\"q\" </think>";
  v["a"] = Json::array({1, nullptr, true});
  EXPECT_EQ(to_wire_json(v),
            "{\"z\":\"héllo ｜DSML｜ \\n\\t\\\"q\\\" </think>\",\"a\":[1,null,true]}");
  // A control character is escaped; JSON stays on one line, so a data line never breaks.
  EXPECT_EQ(to_wire_json(Json("a\x01"
                              "b\n")),
            "\"a\\u0001b\\n\"");
}

TEST(Sse, InvalidUtf8IsReplacedNotThrown) {
  Json v = Json::object();
  v["model"] = std::string("bad\xff\xfe tail \xe2\x82");
  std::string text;
  ASSERT_NO_THROW(text = to_wire_json(v));
  EXPECT_EQ(text, "{\"model\":\"bad\xef\xbf\xbd\xef\xbf\xbd tail \xef\xbf\xbd\"}");
  EXPECT_TRUE(Json::accept(text));
}

TEST(SseFrames, ReadsWhatTheWritersWrite) {
  std::string bytes = sse_prefill_comment() + sse_data(Json{{"k", 1}}) +
                      sse_event("error", Json{{"e", "m"}}) + sse_done();
  auto frames = parse_sse(bytes);
  ASSERT_TRUE(frames.ok()) << frames.error().message;
  ASSERT_EQ(frames->size(), 4u);
  EXPECT_TRUE((*frames)[0].comment);
  EXPECT_FALSE((*frames)[1].event.has_value());
  EXPECT_EQ((*frames)[1].data, "{\"k\":1}");
  EXPECT_EQ((*frames)[2].event, "error");
  EXPECT_EQ((*frames)[2].data, "{\"e\":\"m\"}");
  EXPECT_EQ((*frames)[3].data, "[DONE]");
}

TEST(SseFrames, RejectsMalformedFraming) {
  EXPECT_FALSE(parse_sse("data: {}\n").ok());             // unterminated
  EXPECT_FALSE(parse_sse("data: {}\r\n\r\n").ok());       // CRLF
  EXPECT_FALSE(parse_sse("data: a\ndata: b\n\n").ok());   // two data lines
  EXPECT_FALSE(parse_sse("data: a\nevent: x\n\n").ok());  // event after data
  EXPECT_FALSE(parse_sse("event: x\n\n").ok());           // no data
  EXPECT_FALSE(parse_sse("data:{}\n\n").ok());            // no space after the colon
  EXPECT_FALSE(parse_sse("data: {}\n\n\n").ok());         // stray newline
  EXPECT_TRUE(parse_sse("").ok());
}

}  // namespace
}  // namespace dsv4::server

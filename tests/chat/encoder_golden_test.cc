// The four official goldens (PROTOCOL.md §2.13) must render byte for byte.
#include <gtest/gtest.h>

#include "chat/encoder.h"
#include "chat/message_json.h"
#include "test_util.h"

namespace dsv4::chat {
namespace {

using testing::read_file;
using testing::read_json;
using testing::shared_path;

// How the reference test runs golden N: case 1 is {tools, messages} with the tools put on the
// first message; case 4 is chat mode, the others thinking mode.
Result<RenderedPrompt> render_golden(int n) {
  Json input =
      read_json(shared_path("testdata/encoding/test_input_" + std::to_string(n) + ".json"));
  Json messages = input;
  if (input.is_object()) {
    messages = input.at("messages");
    messages[0]["tools"] = input.at("tools");
  }
  DSV4_ASSIGN_OR_RETURN(auto msgs, messages_from_json(messages));
  EncodeOptions opts;
  opts.thinking = n == 4 ? ThinkingMode::chat : ThinkingMode::thinking;
  return encode_messages(msgs, opts);
}

std::string golden_output(int n) {
  std::string s =
      read_file(shared_path("testdata/encoding/test_output_" + std::to_string(n) + ".txt"));
  // Some distributions of the goldens end with a newline the encoder does not write.
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

class GoldenTest : public ::testing::TestWithParam<int> {};

TEST_P(GoldenTest, RendersByteForByte) {
  int n = GetParam();
  auto r = render_golden(n);
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string want = golden_output(n);
  EXPECT_EQ(r->text, want);
  if (r->text != want) {
    size_t i = 0;
    while (i < want.size() && i < r->text.size() && want[i] == r->text[i]) ++i;
    ADD_FAILURE() << "first difference at byte " << i << ": got «" << r->text.substr(i, 80)
                  << "» want «" << want.substr(i, 80) << "»";
  }
  // The segments are a partition of the text.
  std::string joined;
  for (const auto& s : r->segments) joined += s.text;
  EXPECT_EQ(joined, r->text);
}

INSTANTIATE_TEST_SUITE_P(Official, GoldenTest, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace dsv4::chat

#include "gguf/types.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace dsv4::gguf {
namespace {

TEST(GgufTypes, GeometryOfEverySupportedType) {
  struct Row {
    TensorType type;
    uint32_t id;
    const char* name;
    int64_t elems, bytes;
  };
  const Row rows[] = {
      {TensorType::F32, 0, "F32", 1, 4},          {TensorType::F16, 1, "F16", 1, 2},
      {TensorType::Q8_0, 8, "Q8_0", 32, 34},      {TensorType::Q2_K, 10, "Q2_K", 256, 84},
      {TensorType::Q4_K, 12, "Q4_K", 256, 144},   {TensorType::Q8_K, 15, "Q8_K", 256, 292},
      {TensorType::IQ2_XXS, 16, "IQ2_XXS", 256, 66}, {TensorType::I32, 26, "I32", 1, 4},
      {TensorType::BF16, 30, "BF16", 1, 2},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(static_cast<uint32_t>(r.type), r.id);
    const auto traits = type_traits(r.id);
    ASSERT_TRUE(traits.has_value()) << r.name;
    EXPECT_STREQ(traits->name, r.name);
    EXPECT_EQ(traits->block_elems, r.elems) << r.name;
    EXPECT_EQ(traits->block_bytes, r.bytes) << r.name;
    EXPECT_EQ(type_name(r.type), r.name);
  }
}

TEST(GgufTypes, UnknownIds) {
  for (uint32_t id : {2u, 3u, 6u, 7u, 9u, 11u, 13u, 14u, 17u, 25u, 27u, 29u, 31u, 1000u,
                      0xffffffffu}) {
    EXPECT_FALSE(type_traits(id).has_value()) << id;
  }
  EXPECT_EQ(type_name(42u), "type#42");
}

TEST(GgufTypes, RowBytes) {
  EXPECT_EQ(*row_bytes(TensorType::Q8_0, 64), 68u);
  EXPECT_EQ(*row_bytes(TensorType::Q2_K, 4096), 16u * 84);
  EXPECT_EQ(*row_bytes(TensorType::F32, 3), 12u);
  auto bad = row_bytes(TensorType::Q4_K, 100);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("100"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("Q4_K block size 256"), std::string::npos);
  EXPECT_FALSE(row_bytes(TensorType::F32, 0).ok());
  EXPECT_FALSE(row_bytes(TensorType::F32, -32).ok());
  EXPECT_FALSE(row_bytes(TensorType::F32, INT64_MAX).ok());  // 4 * (2^63-1) overflows
  EXPECT_FALSE(row_bytes(static_cast<TensorType>(99), 32).ok());
}

TEST(GgufTypes, TensorBytes) {
  const std::vector<uint64_t> expert = {4096, 2048, 256};
  EXPECT_EQ(*tensor_bytes(TensorType::IQ2_XXS, expert), 16ull * 66 * 2048 * 256);
  EXPECT_EQ(*tensor_bytes(TensorType::BF16, std::vector<uint64_t>{5, 3}), 30u);

  auto not_multiple = tensor_bytes(TensorType::Q8_0, std::vector<uint64_t>{33, 2});
  ASSERT_FALSE(not_multiple.ok());
  EXPECT_EQ(not_multiple.error().message, "ne[0] = 33 is not a multiple of the Q8_0 block size 32");

  auto zero = tensor_bytes(TensorType::F32, std::vector<uint64_t>{4, 0});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().message, "ne[1] is 0");

  EXPECT_FALSE(tensor_bytes(TensorType::F32, std::vector<uint64_t>{}).ok());

  // Bytes overflow with an element count that still fits.
  auto bytes_overflow = tensor_bytes(TensorType::F32, std::vector<uint64_t>{1ull << 31, 1ull << 31});
  ASSERT_FALSE(bytes_overflow.ok());
  EXPECT_NE(bytes_overflow.error().message.find("overflows"), std::string::npos);

  // Element count beyond 2^63-1 although the IQ2_XXS byte size would fit in 64 bits.
  auto elems_overflow =
      tensor_bytes(TensorType::IQ2_XXS, std::vector<uint64_t>{1ull << 56, 1ull << 9});
  ASSERT_FALSE(elems_overflow.ok());
  EXPECT_NE(elems_overflow.error().message.find("elements"), std::string::npos);

  auto huge_dim = tensor_bytes(TensorType::F32, std::vector<uint64_t>{UINT64_MAX});
  EXPECT_FALSE(huge_dim.ok());
}

}  // namespace
}  // namespace dsv4::gguf

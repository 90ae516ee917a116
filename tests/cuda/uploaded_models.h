// Synthetic models uploaded to the device once per test binary.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "cpu/test_models.h"
#include "cuda/device_model.h"

namespace dsv4::cuda::testing {

// The small preset with F32 weights (as the engine's synthetic presets): sliding, ratio-4 with the
// indexer and ratio-128 layers, window 128. Null (and a test failure) if the upload fails.
inline std::shared_ptr<const DeviceModel> uploaded_small_model() {
  static std::shared_ptr<const DeviceModel> dev = [] {
    Result<std::unique_ptr<DeviceModel>> d = upload_model(cpu::testing::synthetic_model("small"));
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d.ok() ? std::shared_ptr<const DeviceModel>(std::move(d).value()) : nullptr;
  }();
  return dev;
}

}  // namespace dsv4::cuda::testing

// Engines (engine/engine.h) over the synthetic presets, for the CUDA tests that go through the
// engine's sessions.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "engine/engine.h"

namespace dsv4::cuda::testing {

// The preset's engine on `backend`, with its synthetic MTP block when with_mtp. Null (and a test
// failure) if it does not load.
inline std::shared_ptr<engine::Engine> load_synthetic_engine(engine::Backend backend, const char* preset,
                                                             engine::Mode mode = engine::Mode::kOfficial,
                                                             bool with_mtp = false) {
  engine::EngineOptions o;
  o.synthetic_preset = preset;
  o.synthetic_mtp = with_mtp;
  o.backend = backend;
  o.mode = mode;
  Result<std::shared_ptr<engine::Engine>> e = engine::Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error().message;
  return e.ok() ? *e : nullptr;
}

}  // namespace dsv4::cuda::testing

// The tiny synthetic model for the server tests: written once per test process to a temporary
// file (the server loads models from files, as `dsv4 serve` does), with its engine, tokenizer
// and special tokens.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/synthetic.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::server::testing {

struct TinyModel {
  std::string path;
  std::shared_ptr<engine::Engine> engine;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  tokenizer::SpecialTokens special;
};

inline const TinyModel& tiny_model() {
  static TinyModel* model = [] {
    auto* m = new TinyModel;
    m->path = (std::filesystem::temp_directory_path() / ("dsv4_server_tiny_" + std::to_string(getpid()) + ".gguf"))
                  .string();
    model::SyntheticSpec spec;
    spec.preset = "tiny";
    Result<gguf::Writer> writer = model::make_synthetic_model(spec);
    EXPECT_TRUE(writer.ok()) << writer.error().message;
    Status written = writer->write(m->path);
    EXPECT_TRUE(written.ok()) << written.message();
    Result<gguf::File> file = gguf::File::open(m->path);
    EXPECT_TRUE(file.ok()) << file.error().message;
    Result<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::from_gguf(*file);
    EXPECT_TRUE(tok.ok()) << tok.error().message;
    m->tokenizer = std::make_unique<tokenizer::Tokenizer>(std::move(tok).value());
    m->special = tokenizer::SpecialTokens::resolve(*m->tokenizer).value();
    engine::EngineOptions eo;
    eo.model_path = m->path;
    Result<std::shared_ptr<engine::Engine>> e = engine::Engine::load(eo);
    EXPECT_TRUE(e.ok()) << e.error().message;
    m->engine = std::move(e).value();
    std::atexit([] { std::filesystem::remove(model->path); });
    return m;
  }();
  return *model;
}

}  // namespace dsv4::server::testing

// Where the commands that run the model find it when no -m is given: $DSV4_MODEL, else
// $XDG_DATA_HOME/dsv4/model.gguf, else ~/.local/share/dsv4/model.gguf. A missing model gets a
// message that tells how to download the published file or make a synthetic one.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "util/status.h"

namespace dsv4::cli {

// The path used when -m is not given (the environment is read at each call).
std::string default_model_path();

// `given` when not empty, else the default; an error with instructions when that file does
// not exist.
Result<std::string> resolve_model_path(const std::string& given);

// Adds "-m,--model" with the help text naming the default, to `cmd`.
CLI::Option* add_model_option(CLI::App* cmd, std::string& path);

}  // namespace dsv4::cli

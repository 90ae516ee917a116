// The one Session implementation, over any backend's state (backend.h): the token timeline,
// rollback checkpoints, sync to a prefix, and snapshots in the backend-independent envelope.
// Internal to engine/.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/snapshot.h"

namespace dsv4::engine {

std::unique_ptr<Session> make_session(std::unique_ptr<BackendState> state, const model::Config& config,
                                      const Fingerprint& fingerprint, Mode mode, int64_t n_ctx);

}  // namespace dsv4::engine

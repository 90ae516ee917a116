#include "cuda/mtp_block.h"

#include <algorithm>

#include "cuda/check.h"

namespace dsv4::cuda {

MtpBlockSession::MtpBlockSession(std::unique_ptr<DeviceSession> block, const DeviceSession& main,
                                 std::unique_ptr<DeviceArena> kept)
    : block_(std::move(block)), main_(main), kept_(std::move(kept)), hd_(4 * main.config().n_embd) {}

Result<std::unique_ptr<MtpBlockSession>> MtpBlockSession::create(std::shared_ptr<const DeviceModel> block,
                                                                 const DeviceSession& main, int max_chunk) {
  if (!block->is_mtp_block() || main.hidden() == nullptr) {
    return make_error("cuda mtp: needs the block's model and a model session with hidden rows");
  }
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<DeviceSession> s,
                        DeviceSession::create(std::move(block), main.n_ctx(), main.mode(), max_chunk,
                                              main.prefill_math(), true, main.stream()));
  // Its logits are read for an arg-max only: no step queued ahead of the host.
  s->set_speculation(false);
  auto kept = std::make_unique<DeviceArena>();
  DSV4_TRY(kept->allocate(sizeof(float) * 4 * main.config().n_embd, "the MTP block's kept row"));
  return std::unique_ptr<MtpBlockSession>(new MtpBlockSession(std::move(s), main, std::move(kept)));
}

Status MtpBlockSession::start_at(int64_t index) {
  has_kept_ = false;
  return block_->start_at(index);
}

Status MtpBlockSession::copy_rows(float* dst, const float* src, int64_t rows) const {
  if (rows == 0) return Status();
  return cuda_status(cudaMemcpyAsync(dst, src, sizeof(float) * hd_ * rows, cudaMemcpyDeviceToDevice, main_.stream()),
                     "mtp rows");
}

Status MtpBlockSession::run(bool kept_first, int64_t row, std::span<const int32_t> next, bool logits) {
  const size_t max_chunk = static_cast<size_t>(block_->max_chunk());
  for (size_t done = 0; done < next.size();) {
    const size_t T = std::min(max_chunk, next.size() - done);
    float* dst = block_->hidden();
    int64_t from_main = static_cast<int64_t>(T);
    if (kept_first && done == 0) {
      DSV4_TRY(copy_rows(dst, kept(), 1));
      dst += hd_;
      --from_main;
    }
    DSV4_TRY(copy_rows(dst, main_.hidden() + row * hd_, from_main));
    row += from_main;
    const std::span<const int32_t> chunk = next.subspan(done, T);
    done += T;
    DSV4_TRY(logits && done == next.size() ? block_->forward(chunk, nullptr) : block_->forward_without_logits(chunk));
  }
  return Status();
}

Status MtpBlockSession::keep(int64_t row) {
  has_kept_ = true;
  return copy_rows(kept(), main_.hidden() + row * hd_, 1);
}

Result<int32_t> MtpBlockSession::arg_max() {
  SamplingRequest greedy;
  greedy.raw_greedy = true;
  DSV4_ASSIGN_OR_RETURN(const int32_t token, block_->sample(greedy));
  if (token < 0) return make_error("cuda mtp: no finite logit");
  return token;
}

Result<MtpBlockSession::Saved> MtpBlockSession::save() {
  Saved s;
  DSV4_ASSIGN_OR_RETURN(s.window, block_->checkpoint());
  if (has_kept_) {
    s.kept.resize(static_cast<size_t>(hd_));
    DSV4_CUDA_TRY(cudaMemcpyAsync(s.kept.data(), kept(), sizeof(float) * hd_, cudaMemcpyDeviceToHost, main_.stream()));
    DSV4_CUDA_TRY(cudaStreamSynchronize(main_.stream()));
  }
  return s;
}

Status MtpBlockSession::restore(const Saved& saved) {
  DSV4_TRY(block_->rollback(*saved.window));
  has_kept_ = !saved.kept.empty();
  if (!has_kept_) return Status();
  // Pageable source: staged before the call returns.
  return cuda_status(cudaMemcpyAsync(kept(), saved.kept.data(), sizeof(float) * hd_, cudaMemcpyHostToDevice,
                                     main_.stream()),
                     "mtp kept row");
}

}  // namespace dsv4::cuda

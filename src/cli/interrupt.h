// Ctrl+C while the model works (prefill or generation): SIGINT sets a flag that the prefill
// progress callback and the generator's should_cancel poll, so the work stops within one chunk or
// one decode step and the chat returns to its prompt. A second Ctrl+C before the first was
// taken up quits at once (the way out if something does not poll).
#pragma once

namespace dsv4::cli {

class InterruptScope {
 public:
  // Installs the handler (and clears the flag) for the scope's lifetime.
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  bool requested() const;
  void clear();
};

}  // namespace dsv4::cli

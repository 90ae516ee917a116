#include "server/scheduler.h"

#include <algorithm>

namespace dsv4::server {

void Scheduler::Ticket::cancel() { scheduler_->cancel(state_); }

Scheduler::Scheduler(size_t max_queued) : max_queued_(max_queued), thread_([this] { worker(); }) {}

Scheduler::~Scheduler() { shutdown(); }

std::unique_ptr<Scheduler::Ticket> Scheduler::submit(std::shared_ptr<Job> job) {
  auto state = std::make_shared<Ticket::State>();
  state->job = std::move(job);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= max_queued_) return nullptr;
    state->id = next_id_++;
    queue_.push_back(state);
  }
  wake_.notify_one();
  return std::unique_ptr<Ticket>(new Ticket(this, std::move(state)));
}

void Scheduler::cancel(const std::shared_ptr<Ticket::State>& state) {
  std::shared_ptr<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state->cancelled.exchange(true)) return;
    auto it = std::find(queue_.begin(), queue_.end(), state);
    if (it != queue_.end()) {
      queue_.erase(it);
      dropped = state->job;
    }
  }
  // Outside the lock: dropped() may take the job's own locks.
  if (dropped) dropped->dropped();
}

size_t Scheduler::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

bool Scheduler::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_ != nullptr;
}

bool Scheduler::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void Scheduler::worker() {
  for (;;) {
    std::shared_ptr<Ticket::State> next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      next = std::move(queue_.front());
      queue_.pop_front();
      running_ = next;
    }
    next->job->run(next->cancelled);
    std::lock_guard<std::mutex> lock(mu_);
    running_.reset();
  }
}

void Scheduler::shutdown() {
  std::deque<std::shared_ptr<Ticket::State>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    dropped.swap(queue_);
    if (running_) running_->cancelled.store(true);
  }
  wake_.notify_all();
  for (auto& s : dropped) {
    s->cancelled.store(true);
    s->job->dropped();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace dsv4::server

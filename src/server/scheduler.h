// One engine worker behind a fair queue: requests run one at a time, in arrival order, on a
// thread of their own, so HTTP threads only wait for their own results and never run engine
// work (DESIGN.md §2; batching several sessions comes later). A request cancelled while queued
// leaves the queue at once; a running one sees its flag within one decode step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

namespace dsv4::server {

class Scheduler {
 public:
  class Job {
   public:
    virtual ~Job() = default;
    // On the worker. `cancelled` turns true when the client goes away or the server shuts down;
    // the job should stop within one decode step.
    virtual void run(const std::atomic<bool>& cancelled) = 0;
    // Instead of run(): the job left the queue without running (cancelled, or shutdown).
    virtual void dropped() = 0;
  };

  // A submitted job, for its HTTP thread: cancel() removes it from the queue or flags it.
  class Ticket {
   public:
    void cancel();
    bool cancelled() const { return state_->cancelled.load(); }

   private:
    friend class Scheduler;
    struct State {
      std::shared_ptr<Job> job;
      std::atomic<bool> cancelled{false};
      uint64_t id = 0;
    };
    Ticket(Scheduler* scheduler, std::shared_ptr<State> state) : scheduler_(scheduler), state_(std::move(state)) {}
    Scheduler* scheduler_;
    std::shared_ptr<State> state_;
  };

  // max_queued: jobs waiting (not counting the one running); more are refused.
  explicit Scheduler(size_t max_queued);
  ~Scheduler();  // shutdown()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // nullptr when the queue is full or the scheduler is shutting down (the job is not kept).
  std::unique_ptr<Ticket> submit(std::shared_ptr<Job> job);

  // Jobs waiting / whether one is running / whether shutdown() has begun.
  size_t queued() const;
  bool busy() const;
  bool stopping() const;

  // Refuses new jobs, drops the queued ones, cancels the running one and joins the worker.
  void shutdown();

 private:
  void worker();
  void cancel(const std::shared_ptr<Ticket::State>& state);

  const size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Ticket::State>> queue_;
  std::shared_ptr<Ticket::State> running_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dsv4::server

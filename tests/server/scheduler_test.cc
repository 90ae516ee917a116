// The engine queue: arrival order, one job at a time, cancellation while queued (the slot is
// freed at once) and while running (the job sees its flag), refusal when full, shutdown.
// Synchronised with latches and condition variables, never with sleeps.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

namespace dsv4::server {
namespace {

// A shared log of what happened, and gates that hold a job inside run().
struct Journal {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;
  std::vector<std::string> open_gates;

  void add(const std::string& e) {
    std::lock_guard<std::mutex> l(mu);
    events.push_back(e);
    cv.notify_all();
  }
  void wait_for(const std::string& e) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return std::find(events.begin(), events.end(), e) != events.end(); });
  }
  void open(const std::string& gate) {
    std::lock_guard<std::mutex> l(mu);
    open_gates.push_back(gate);
    cv.notify_all();
  }
  void pass(const std::string& gate) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return std::find(open_gates.begin(), open_gates.end(), gate) != open_gates.end(); });
  }
  std::vector<std::string> snapshot() {
    std::lock_guard<std::mutex> l(mu);
    return events;
  }
};

class TestJob final : public Scheduler::Job {
 public:
  TestJob(Journal& j, std::string name, bool gated = false, bool wait_cancel = false)
      : j_(j), name_(std::move(name)), gated_(gated), wait_cancel_(wait_cancel) {}
  void run(const std::atomic<bool>& cancelled) override {
    j_.add(name_ + ":start");
    if (gated_) j_.pass(name_);
    if (wait_cancel_) {
      // Stands for a decode loop that polls its flag once per step.
      while (!cancelled.load()) std::this_thread::yield();
      j_.add(name_ + ":cancelled");
    }
    j_.add(name_ + ":end");
  }
  void dropped() override { j_.add(name_ + ":dropped"); }

 private:
  Journal& j_;
  std::string name_;
  bool gated_, wait_cancel_;
};

TEST(Scheduler, RunsJobsOneAtATimeInArrivalOrder) {
  Journal j;
  Scheduler s(8);
  auto a = s.submit(std::make_shared<TestJob>(j, "a", true));
  j.wait_for("a:start");
  auto b = s.submit(std::make_shared<TestJob>(j, "b"));
  auto c = s.submit(std::make_shared<TestJob>(j, "c"));
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(s.queued(), 2u);
  EXPECT_TRUE(s.busy());
  j.open("a");
  j.wait_for("c:end");
  EXPECT_EQ(j.snapshot(), (std::vector<std::string>{"a:start", "a:end", "b:start", "b:end", "c:start", "c:end"}));
}

TEST(Scheduler, CancellingAQueuedJobFreesItsSlotAtOnce) {
  Journal j;
  Scheduler s(2);
  auto a = s.submit(std::make_shared<TestJob>(j, "a", true));
  j.wait_for("a:start");
  auto b = s.submit(std::make_shared<TestJob>(j, "b"));
  auto c = s.submit(std::make_shared<TestJob>(j, "c"));
  ASSERT_TRUE(b && c);
  EXPECT_EQ(s.submit(std::make_shared<TestJob>(j, "refused")), nullptr);  // queue full
  b->cancel();
  EXPECT_EQ(s.queued(), 1u);
  j.wait_for("b:dropped");
  auto d = s.submit(std::make_shared<TestJob>(j, "d"));
  ASSERT_TRUE(d);
  j.open("a");
  j.wait_for("d:end");
  const auto events = j.snapshot();
  EXPECT_EQ(std::count(events.begin(), events.end(), "b:start"), 0);
  EXPECT_EQ(std::count(events.begin(), events.end(), "refused:start"), 0);
  EXPECT_EQ(events.back(), "d:end");
}

TEST(Scheduler, CancellingARunningJobRaisesItsFlag) {
  Journal j;
  Scheduler s(4);
  auto a = s.submit(std::make_shared<TestJob>(j, "a", false, true));
  auto b = s.submit(std::make_shared<TestJob>(j, "b"));
  j.wait_for("a:start");
  a->cancel();
  a->cancel();  // twice is harmless
  j.wait_for("b:end");
  EXPECT_EQ(j.snapshot(), (std::vector<std::string>{"a:start", "a:cancelled", "a:end", "b:start", "b:end"}));
  EXPECT_TRUE(a->cancelled());
  EXPECT_FALSE(b->cancelled());
}

TEST(Scheduler, ShutdownDropsQueuedJobsAndCancelsTheRunningOne) {
  Journal j;
  auto s = std::make_unique<Scheduler>(4);
  auto a = s->submit(std::make_shared<TestJob>(j, "a", false, true));
  j.wait_for("a:start");
  auto b = s->submit(std::make_shared<TestJob>(j, "b"));
  s->shutdown();
  const auto events = j.snapshot();
  EXPECT_NE(std::find(events.begin(), events.end(), "a:cancelled"), events.end());
  EXPECT_NE(std::find(events.begin(), events.end(), "b:dropped"), events.end());
  EXPECT_EQ(std::find(events.begin(), events.end(), "b:start"), events.end());
  EXPECT_EQ(s->submit(std::make_shared<TestJob>(j, "late")), nullptr);
  s->shutdown();  // idempotent
  b->cancel();    // a ticket outliving the queue entry is harmless
  s.reset();
}

}  // namespace
}  // namespace dsv4::server

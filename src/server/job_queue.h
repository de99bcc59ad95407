// A bounded FIFO of jobs run one at a time by one worker thread: the CPU is the bottleneck, so
// generations never run side by side. Submitting to a full queue fails at once (the HTTP layer
// answers 503); a job can be cancelled while it waits (it never runs) or interrupted while it runs
// (its work sees the flag and stops at the next step).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace sdpal::server {

class JobQueue;

class Job {
 public:
  enum class State { queued, running, done, cancelled };
  using Clock = std::chrono::steady_clock;

  // Set by JobQueue::interrupt_current or by the owner (client gone); polled by the work.
  bool interrupted() const { return interrupt_.load(); }
  void interrupt() { interrupt_.store(true); }

  State state() const;
  // Waits up to `timeout` for the job to finish; true once it is done or cancelled.
  bool wait_for(std::chrono::milliseconds timeout) const;
  // Time spent in the queue before the worker took it (so far, while still queued).
  std::chrono::milliseconds queue_wait() const;

 private:
  friend class JobQueue;
  std::function<void(Job&)> work_;
  std::atomic<bool> interrupt_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  State state_ = State::queued;
  Clock::time_point submitted_ = Clock::now(), started_{};
};

class JobQueue {
 public:
  explicit JobQueue(size_t capacity);
  ~JobQueue();  // cancels what waits, lets the running job finish, joins the worker
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues `work` (run on the worker thread with its Job); nullptr when `capacity` jobs already
  // wait. The running job does not count against the capacity.
  std::shared_ptr<Job> submit(std::function<void(Job&)> work);
  // Removes a queued job (true) or, if it already runs, interrupts it (false).
  bool cancel(const std::shared_ptr<Job>& job);
  // Interrupts the running job, if any (A1111's /interrupt); returns whether one ran.
  bool interrupt_current();

  // Refuses new jobs from now on, cancels the queued ones and interrupts the running one (the
  // server is stopping: nobody should wait for work that will not be delivered).
  void shutdown();

  size_t waiting() const;  // jobs queued, not running
  bool busy() const;       // a job is running
  size_t capacity() const { return capacity_; }

 private:
  void worker_loop();

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::shared_ptr<Job> running_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace sdpal::server

#include "server/job_queue.h"

#include <algorithm>

namespace sdpal::server {

Job::State Job::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

bool Job::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout,
                      [&] { return state_ == State::done || state_ == State::cancelled; });
}

std::chrono::milliseconds Job::queue_wait() const {
  std::lock_guard lock(mu_);
  const Clock::time_point end =
      state_ == State::queued || started_ == Clock::time_point{} ? Clock::now() : started_;
  return std::chrono::duration_cast<std::chrono::milliseconds>(end - submitted_);
}

JobQueue::JobQueue(size_t capacity) : capacity_(capacity) {
  worker_ = std::thread([this] { worker_loop(); });
}

JobQueue::~JobQueue() {
  shutdown();
  worker_.join();
}

void JobQueue::shutdown() {
  std::deque<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
    if (running_) running_->interrupt();
  }
  cv_.notify_all();
  for (const auto& j : dropped) {
    std::lock_guard lock(j->mu_);
    j->state_ = Job::State::cancelled;
    j->cv_.notify_all();
  }
}

std::shared_ptr<Job> JobQueue::submit(std::function<void(Job&)> work) {
  auto job = std::make_shared<Job>();
  job->work_ = std::move(work);
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= capacity_) return nullptr;
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

bool JobQueue::cancel(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(mu_);
    const auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it == queue_.end()) {
      job->interrupt();
      return false;
    }
    queue_.erase(it);
  }
  std::lock_guard lock(job->mu_);
  job->state_ = Job::State::cancelled;
  job->cv_.notify_all();
  return true;
}

bool JobQueue::interrupt_current() {
  std::lock_guard lock(mu_);
  if (!running_) return false;
  running_->interrupt();
  return true;
}

size_t JobQueue::waiting() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

bool JobQueue::busy() const {
  std::lock_guard lock(mu_);
  return running_ != nullptr;
}

void JobQueue::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
      running_ = job;
    }
    {
      std::lock_guard lock(job->mu_);
      job->state_ = Job::State::running;
      job->started_ = Job::Clock::now();
    }
    // The work reports its own errors into its result; nothing may escape the worker thread.
    try {
      job->work_(*job);
    } catch (...) {
    }
    job->work_ = nullptr;
    {
      std::lock_guard lock(mu_);
      running_.reset();
    }
    std::lock_guard lock(job->mu_);
    job->state_ = Job::State::done;
    job->cv_.notify_all();
  }
}

}  // namespace sdpal::server

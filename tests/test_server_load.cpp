// `sdpal serve` under load: 100 concurrent clients, a fixed number of requests each and a time
// limit, against the demo model with the default queue (16). Every request must be answered
// exactly once, with 200 or 503 (the queue is full), the server must not crash, and the
// process's memory must stay bounded. Speed is not asserted (scripts/bench-serve.sh measures it).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/server_harness.h"
#include "support/temp_dir.h"

namespace sdpal::test {
namespace {

using json = nlohmann::json;

TEST_F(TempDirTest, ServerUnderLoadAnswersEveryRequestOnce) {
  SDPAL_REQUIRE_FIXTURES();
  constexpr int kClients = 100, kRequestsEach = 3;
  std::FILE* log = std::fopen(path("log.txt").c_str(), "w");
  ASSERT_TRUE(log);
  server::ServeOptions o = demo_serve_options();
  o.log = log;
  o.read_timeout_s = 30;
  const double rss_before = peak_rss_mib();
  std::map<int, int> statuses;
  int failures = 0;
  std::map<std::string, int> errors;
  {
    TestServer s(o);
    std::mutex mu;
    std::vector<std::thread> clients;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    for (int k = 0; k < kClients; ++k)
      clients.emplace_back([&, k] {
        auto c = s.client(120);
        for (int i = 0; i < kRequestsEach && std::chrono::steady_clock::now() < deadline; ++i) {
          const json body = {
              {"prompt", "a photo of a sneaker"}, {"seed", k * kRequestsEach + i}, {"steps", 4}};
          const auto r = c->Post("/sdapi/v1/txt2img", body.dump(), "application/json");
          std::lock_guard lock(mu);
          if (!r) {
            ++failures;
            ++errors[httplib::to_string(r.error())];
          } else
            ++statuses[r->status];
        }
      });
    for (auto& t : clients) t.join();
    auto c = s.client();
    EXPECT_EQ(c->Get("/health")->status, 200) << "the server still serves";
  }
  std::fclose(log);
  const double rss_after = peak_rss_mib();
  int answered = 0;
  for (const auto& [status, n] : statuses) {
    EXPECT_TRUE(status == 200 || status == 503) << n << " answers with status " << status;
    answered += n;
  }
  EXPECT_EQ(failures, 0) << "requests without an answer: " << ::testing::PrintToString(errors);
  EXPECT_EQ(answered, kClients * kRequestsEach);
  EXPECT_GT(statuses[200], 0);
  // The server logged each request exactly once: no request lost or answered twice.
  std::ifstream f(path("log.txt"));
  int logged = 0;
  for (std::string line; std::getline(f, line);)
    if (line.find(" /sdapi/v1/txt2img ") != std::string::npos) {
      ++logged;
      if (line.find(" 200 ") == std::string::npos && line.find(" 503 ") == std::string::npos)
        ADD_FAILURE() << "logged: " << line;
    }
  EXPECT_EQ(logged, kClients * kRequestsEach);
  // 100 connections and 16 queued requests of a 36 MB model: far below this.
  EXPECT_LT(rss_after - rss_before, 1024)
      << "peak RSS grew from " << rss_before << " to " << rss_after << " MiB";
  std::printf("load: %d requests from %d clients: %d x 200, %d x 503; peak RSS %.0f MiB\n",
              answered, kClients, statuses[200], statuses[503], rss_after);
}

}  // namespace
}  // namespace sdpal::test

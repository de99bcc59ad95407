// `sdpal serve` through real HTTP on 127.0.0.1 (a free port): every endpoint with the demo model
// and tiny-sd1, A1111's field names and response shapes, images that decode and carry their
// infotext, a seed that reproduces the CLI's image bit for bit, model switching by name only,
// interrupt, the queue limit, per-request and body limits, authentication, logs, saved images.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "core/error.h"
#include "formats/png.h"
#include "pipeline/infotext.h"
#include "server/base64.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/server_harness.h"
#include "support/temp_dir.h"
#include "tools/version.h"

namespace sdpal::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

httplib::Result post(httplib::Client& c, const std::string& path, const json& body) {
  return c.Post(path, body.dump(), "application/json");
}

json info_of(const json& r) { return json::parse(r.at("info").get<std::string>()); }

TEST(ServerApi, ListingEndpointsUseA1111Shapes) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(demo_serve_options());
  auto c = s.client();
  const json health = body_json(c->Get("/health"));
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["model"], "model");  // the fixture's folder name

  const json samplers = body_json(c->Get("/sdapi/v1/samplers"));
  ASSERT_TRUE(samplers.is_array());
  ASSERT_EQ(samplers.size(), 6u);
  EXPECT_EQ(samplers[0]["name"], "Euler a");
  EXPECT_TRUE(samplers[0]["aliases"].is_array());
  EXPECT_TRUE(samplers[0]["options"].is_object());

  const json scheds = body_json(c->Get("/sdapi/v1/schedulers"));
  ASSERT_EQ(scheds.size(), 2u);
  EXPECT_EQ(scheds[1]["name"], "karras");
  EXPECT_EQ(scheds[1]["label"], "Karras");

  const json models = body_json(c->Get("/sdapi/v1/sd-models"));
  ASSERT_EQ(models.size(), 1u);
  for (const char* k : {"title", "model_name", "hash", "sha256", "filename", "config"})
    EXPECT_TRUE(models[0].contains(k)) << k;
  EXPECT_EQ(models[0]["filename"], "model") << "no server paths are shown";

  const json opts = body_json(c->Get("/sdapi/v1/options"));
  EXPECT_EQ(opts["sd_model_checkpoint"], "model");

  const json prog = body_json(c->Get("/sdapi/v1/progress"));
  EXPECT_EQ(prog["progress"], 0);
  EXPECT_EQ(prog["state"]["job_count"], 0);
  for (const char* k : {"sampling_step", "sampling_steps", "job_count", "interrupted"})
    EXPECT_TRUE(prog["state"].contains(k)) << k;
  EXPECT_TRUE(prog.contains("eta_relative"));
  EXPECT_TRUE(prog.contains("current_image"));

  // The embedded web page and its assets; nothing else behind "/".
  const auto page = c->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type").rfind("text/html", 0), 0u);
  EXPECT_NE(page->body.find("<html"), std::string::npos);
  EXPECT_EQ(c->Get("/app.js")->status, 200);
  EXPECT_EQ(c->Get("/index.html.bak")->status, 404);
  EXPECT_EQ(c->Get("/..")->status, 404);

  const auto interrupt = c->Post("/sdapi/v1/interrupt", "", "application/json");
  ASSERT_TRUE(interrupt);
  EXPECT_EQ(interrupt->status, 200);
}

TEST(ServerApi, Txt2ImgImagesDecodeAndCarryTheirInfotext) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(demo_serve_options());
  auto c = s.client();
  const auto r = post(*c, "/sdapi/v1/txt2img",
                      {{"prompt", "a photo of a sneaker"},
                       {"negative_prompt", "blurry"},
                       {"seed", 7},
                       {"steps", 6},
                       {"cfg_scale", 4.5},
                       {"sampler_name", "DPM++ 2M"},
                       {"scheduler", "Karras"},
                       {"batch_size", 2},
                       {"n_iter", 2}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = body_json(r);
  ASSERT_EQ(j["images"].size(), 4u);
  const json info = info_of(j);
  ASSERT_EQ(info["infotexts"].size(), 4u);
  EXPECT_EQ(info["seed"], 7);
  EXPECT_EQ(info["all_seeds"], json({7, 7, 9, 9})) << "n_iter k draws from seed + k*batch_size";
  EXPECT_EQ(info["sampler_name"], "DPM++ 2M");
  EXPECT_EQ(j["parameters"]["steps"], 6);
  for (size_t i = 0; i < 4; ++i) {
    const Image img = decode_b64_png(j["images"][i]);
    EXPECT_EQ(img.width, 32);
    EXPECT_EQ(img.height, 32);
    ASSERT_TRUE(img.text.count("parameters"));
    EXPECT_EQ(img.text.at("parameters"), info["infotexts"][i]);
    const GenerationInfo g = parse_a1111_parameters(img.text.at("parameters"));
    EXPECT_EQ(g.prompt, "a photo of a sneaker");
    EXPECT_EQ(g.negative_prompt, "blurry");
    EXPECT_EQ(g.steps, 6);
    EXPECT_EQ(g.sampler, "DPM++ 2M");
    EXPECT_EQ(g.schedule_type, "Karras");
    EXPECT_EQ(g.seed, i < 2 ? 7u : 9u);
  }
  // Same request, same images.
  const json again = body_json(post(*c, "/sdapi/v1/txt2img",
                                    {{"prompt", "a photo of a sneaker"},
                                     {"negative_prompt", "blurry"},
                                     {"seed", 7},
                                     {"steps", 6},
                                     {"cfg_scale", 4.5},
                                     {"sampler_name", "DPM++ 2M Karras"},
                                     {"batch_size", 2},
                                     {"n_iter", 2}}));
  EXPECT_EQ(again["images"], j["images"]);
}

TEST_F(TempDirTest, ServerSeedReproducesTheCliImageBitForBit) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string out = path("cli.png");
  const CliResult cli =
      run_cli({"generate", "-m", demo_model_dir(), "-p", "a dress", "-n", "ugly", "--seed", "1234",
               "--steps", "8", "--cfg-scale", "4.5", "--sampler", "euler_a", "-q", "-o", out});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  server::ServeOptions o = demo_serve_options();
  o.version = "sdpal " + std::string(SDPAL_VERSION);
  TestServer s(o);
  auto c = s.client();
  const json j = body_json(post(*c, "/sdapi/v1/txt2img",
                                {{"prompt", "a dress"},
                                 {"negative_prompt", "ugly"},
                                 {"seed", 1234},
                                 {"steps", 8},
                                 {"cfg_scale", 4.5},
                                 {"sampler_name", "Euler a"}}));
  ASSERT_EQ(j["images"].size(), 1u);
  const Image want = read_png(out);
  const Image got = decode_b64_png(j["images"][0]);
  EXPECT_EQ(got.rgb, want.rgb) << "pixels differ from `sdpal generate` with the same settings";
  EXPECT_EQ(got.text.at("parameters"), want.text.at("parameters"));
  // And the PNG bytes themselves.
  std::ifstream f(out, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::string why;
  const auto bytes = server::base64_decode(j["images"][0].get<std::string>(), &why);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(std::string(bytes->begin(), bytes->end()), file);
}

TEST(ServerApi, OpenAiGenerationsAndHealth) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(demo_serve_options());
  auto c = s.client();
  const auto r = post(*c, "/v1/images/generations",
                      {{"prompt", "a handbag"},
                       {"n", 2},
                       {"size", "32x32"},
                       {"response_format", "b64_json"},
                       {"model", "dall-e-2"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = body_json(r);
  EXPECT_TRUE(j["created"].is_number_integer());
  ASSERT_EQ(j["data"].size(), 2u);
  for (const auto& d : j["data"]) {
    const Image img = decode_b64_png(d["b64_json"]);
    EXPECT_EQ(img.width, 32);
    EXPECT_NE(img.text.at("parameters").find("a handbag"), std::string::npos);
  }
  const auto url =
      post(*c, "/v1/images/generations", {{"prompt", "x"}, {"response_format", "url"}});
  ASSERT_TRUE(url);
  EXPECT_EQ(url->status, 400);
}

TEST(ServerApi, Img2ImgMaskAndPngInfo) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(demo_serve_options());
  auto c = s.client();
  const json t = body_json(
      post(*c, "/sdapi/v1/txt2img", {{"prompt", "a sneaker"}, {"seed", 3}, {"steps", 4}}));
  const std::string init = t["images"][0];

  // png-info reads the infotext back.
  const json pi = body_json(post(*c, "/sdapi/v1/png-info", {{"image", init}}));
  EXPECT_EQ(pi["info"], info_of(t)["infotexts"][0]);
  EXPECT_EQ(pi["parameters"]["Seed"], 3);
  EXPECT_EQ(pi["parameters"]["Prompt"], "a sneaker");

  const json base = {{"prompt", "a dress"},
                     {"seed", 5},
                     {"steps", 10},
                     {"denoising_strength", 0.6},
                     {"init_images", {init}}};
  const auto plain = post(*c, "/sdapi/v1/img2img", base);
  ASSERT_EQ(plain->status, 200) << plain->body;
  const json pj = body_json(plain);
  const Image p = decode_b64_png(pj["images"][0]);
  EXPECT_NE(p.text.at("parameters").find("Denoising strength: 0.6, "), std::string::npos)
      << p.text.at("parameters");
  EXPECT_EQ(info_of(pj)["denoising_strength"], 0.6);

  // A white mask repaints everything: the same image as no mask at all.
  Image white{32, 32, std::vector<uint8_t>(32 * 32 * 3, 255), {}};
  json masked = base;
  masked["mask"] = b64_png(white);
  const json mj = body_json(post(*c, "/sdapi/v1/img2img", masked));
  EXPECT_EQ(decode_b64_png(mj["images"][0]).rgb, p.rgb);

  // A mask over the left half only: the result differs from both, and a data: URL is accepted.
  Image half{32, 32, std::vector<uint8_t>(32 * 32 * 3, 0), {}};
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 16; ++x)
      for (int ch = 0; ch < 3; ++ch) half.rgb[(y * 32 + x) * 3 + ch] = 255;
  masked["mask"] = "data:image/png;base64," + b64_png(half);
  const auto hr = post(*c, "/sdapi/v1/img2img", masked);
  ASSERT_EQ(hr->status, 200) << hr->body;
  const Image h = decode_b64_png(body_json(hr)["images"][0]);
  EXPECT_NE(h.rgb, p.rgb);
  // Inverting the mask keeps the left half instead.
  masked["inpainting_mask_invert"] = 1;
  const Image inv = decode_b64_png(body_json(post(*c, "/sdapi/v1/img2img", masked))["images"][0]);
  EXPECT_NE(inv.rgb, h.rgb);
}

TEST_F(TempDirTest, ServerSwitchesModelsByNameOnly) {
  SDPAL_REQUIRE_FIXTURES();
  fs::create_directory_symlink(demo_model_dir(), path("demo"));
  fs::create_directory_symlink(tiny_sd1_dir(), path("tiny"));
  server::ServeOptions o = demo_serve_options();
  o.model.clear();
  o.models_dir = path("");
  TestServer s(o);
  auto c = s.client();
  const json models = body_json(c->Get("/sdapi/v1/sd-models"));
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0]["model_name"], "demo");
  EXPECT_EQ(models[1]["model_name"], "tiny");
  EXPECT_EQ(body_json(c->Get("/sdapi/v1/options"))["sd_model_checkpoint"], "demo");

  const auto sw = post(*c, "/sdapi/v1/options", {{"sd_model_checkpoint", "tiny"}});
  ASSERT_EQ(sw->status, 200) << sw->body;
  EXPECT_EQ(body_json(c->Get("/sdapi/v1/options"))["sd_model_checkpoint"], "tiny");
  const json t = body_json(post(*c, "/sdapi/v1/txt2img", {{"prompt", "x"}, {"steps", 2}}));
  EXPECT_EQ(decode_b64_png(t["images"][0]).width, 128) << "tiny-sd1's native size";
  EXPECT_EQ(info_of(t)["sd_model_name"], "tiny");

  // Per request, through override_settings (A1111's way), with the A1111 title form.
  const json d = body_json(post(*c, "/sdapi/v1/txt2img",
                                {{"prompt", "x"},
                                 {"steps", 2},
                                 {"override_settings", {{"sd_model_checkpoint", "demo [abc]"}}}}));
  EXPECT_EQ(decode_b64_png(d["images"][0]).width, 32);

  // Names only: paths, traversal and unknown names are refused and change nothing.
  for (const std::string& bad : std::vector<std::string>{"../tiny", "/etc/passwd", tiny_sd1_dir(),
                                                         "tiny/../demo", "", "nope", "..", "."}) {
    const auto r = post(*c, "/sdapi/v1/options", {{"sd_model_checkpoint", bad}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad << ": " << r->body;
    EXPECT_EQ(body_json(r)["error"], "model_not_found") << bad;
  }
  EXPECT_EQ(body_json(c->Get("/sdapi/v1/options"))["sd_model_checkpoint"], "demo");
}

// A generation long enough to be caught running: the demo model at its native size, many steps.
json long_job() { return {{"prompt", "a coat"}, {"seed", 1}, {"steps", 1000}, {"cfg_scale", 1}}; }

server::ServeOptions long_job_options() {
  server::ServeOptions o = demo_serve_options();
  o.limits.max_steps = 1000;
  return o;
}

// Waits until the server runs a job that has done at least one step.
void wait_running(httplib::Client& c) {
  for (int i = 0; i < 600; ++i) {
    const json p = body_json(c.Get("/sdapi/v1/progress?skip_current_image=true"));
    if (p["state"]["sampling_step"].get<int>() > 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "the job never started";
}

TEST(ServerApi, InterruptStopsTheRunningJobAndReturnsItsImage) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(long_job_options());
  auto c = s.client();
  std::optional<httplib::Result> r;
  std::thread t(
      [&] { r = s.client()->Post("/sdapi/v1/txt2img", long_job().dump(), "application/json"); });
  wait_running(*c);
  const json p = body_json(c->Get("/sdapi/v1/progress?skip_current_image=true"));
  EXPECT_GT(p["progress"].get<double>(), 0);
  EXPECT_EQ(p["state"]["sampling_steps"], 1000);
  EXPECT_EQ(p["state"]["job_count"], 1);
  EXPECT_GE(p["eta_relative"].get<double>(), 0);
  ASSERT_EQ(c->Post("/sdapi/v1/interrupt", "", "application/json")->status, 200);
  t.join();
  ASSERT_TRUE(r && *r);
  ASSERT_EQ((*r)->status, 200) << (*r)->body;
  const json j = body_json(*r);
  EXPECT_EQ(info_of(j)["interrupted"], true);
  EXPECT_EQ(decode_b64_png(j["images"][0]).width, 32);
  EXPECT_EQ(body_json(c->Get("/sdapi/v1/progress"))["state"]["job_count"], 0);
}

TEST(ServerApi, LivePreviewWithTaesd) {
  SDPAL_REQUIRE_FIXTURES();
  server::ServeOptions o = long_job_options();
  o.load.taesd = fixtures_dir() + "/taesd/weights/taesd";
  TestServer s(o);
  auto c = s.client();
  std::thread t(
      [&] { s.client()->Post("/sdapi/v1/txt2img", long_job().dump(), "application/json"); });
  wait_running(*c);
  const json p = body_json(c->Get("/sdapi/v1/progress"));
  c->Post("/sdapi/v1/interrupt", "", "application/json");
  t.join();
  ASSERT_TRUE(p["current_image"].is_string()) << p.dump().substr(0, 300);
  // TAESD upsamples 8x (8x8 latents -> 64 px); the demo model's own VAE 4x.
  EXPECT_EQ(decode_b64_png(p["current_image"]).width, 64);
  // And the final decode through TAESD, on request.
  const json d = body_json(
      post(*c, "/sdapi/v1/txt2img",
           {{"prompt", "x"}, {"steps", 2}, {"override_settings", {{"sdpal_taesd_decode", true}}}}));
  EXPECT_EQ(decode_b64_png(d["images"][0]).width, 64);
}

TEST(ServerApi, FullQueueAnswers503WithRetryAfter) {
  SDPAL_REQUIRE_FIXTURES();
  server::ServeOptions o = long_job_options();
  o.queue_size = 1;
  TestServer s(o);
  auto c = s.client();
  std::optional<httplib::Result> first, second;
  std::thread t1([&] {
    first = s.client()->Post("/sdapi/v1/txt2img", long_job().dump(), "application/json");
  });
  wait_running(*c);
  std::thread t2([&] {
    second = s.client()->Post("/sdapi/v1/txt2img", json{{"prompt", "x"}, {"steps", 2}}.dump(),
                              "application/json");
  });
  for (int i = 0; i < 500 && body_json(c->Get("/health"))["queued"] != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto third = post(*c, "/sdapi/v1/txt2img", {{"prompt", "x"}, {"steps", 2}});
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 503);
  EXPECT_TRUE(third->has_header("Retry-After"));
  EXPECT_GE(std::stoi(third->get_header_value("Retry-After")), 1);
  EXPECT_EQ(body_json(third)["error"], "queue_full");
  c->Post("/sdapi/v1/interrupt", "", "application/json");
  t1.join();
  t2.join();
  ASSERT_TRUE(first && *first && second && *second);
  EXPECT_EQ((*first)->status, 200);
  EXPECT_EQ((*second)->status, 200) << "the queued request runs after the interrupted one";
}

TEST(ServerApi, AClientThatLeavesWhileQueuedIsDropped) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(long_job_options());
  auto c = s.client();
  std::thread t1(
      [&] { s.client()->Post("/sdapi/v1/txt2img", long_job().dump(), "application/json"); });
  wait_running(*c);
  // This client gives up after a second, while its request still waits.
  auto impatient = s.client(1);
  const auto r = impatient->Post("/sdapi/v1/txt2img", json{{"prompt", "x"}, {"steps", 2}}.dump(),
                                 "application/json");
  EXPECT_FALSE(r) << "the client timed out";
  impatient.reset();  // closes its connection
  bool dropped = false;
  for (int i = 0; i < 300 && !dropped; ++i) {
    dropped = body_json(c->Get("/health"))["queued"] == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(dropped) << "the abandoned request is still queued";
  EXPECT_TRUE(body_json(c->Get("/health"))["busy"].get<bool>()) << "the first job still runs";
  c->Post("/sdapi/v1/interrupt", "", "application/json");
  t1.join();
}

TEST(ServerApi, PerRequestAndBodyLimits) {
  SDPAL_REQUIRE_FIXTURES();
  server::ServeOptions o = demo_serve_options();
  o.limits = {64, 10, 2};
  o.max_body = 4096;
  TestServer s(o);
  auto c = s.client();
  const std::vector<std::pair<json, std::string>> over = {
      {{{"prompt", "x"}, {"steps", 2}, {"width", 128}}, "--max-size 64"},
      {{{"prompt", "x"}, {"steps", 2}, {"height", 72}}, "--max-size 64"},
      {{{"prompt", "x"}, {"steps", 11}}, "--max-steps 10"},
      {{{"prompt", "x"}, {"steps", 2}, {"batch_size", 3}}, "--max-batch 2"},
      {{{"prompt", "x"}, {"steps", 2}, {"batch_size", 2}, {"n_iter", 2}}, "--max-batch 2"}};
  for (const auto& [body, limit] : over) {
    const auto r = post(*c, "/sdapi/v1/txt2img", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body.dump();
    EXPECT_NE(body_json(r)["detail"].get<std::string>().find(limit), std::string::npos) << r->body;
  }
  const auto big = c->Post("/sdapi/v1/txt2img", json{{"prompt", std::string(5000, 'a')}}.dump(),
                           "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(post(*c, "/sdapi/v1/txt2img", {{"prompt", "x"}, {"steps", 10}, {"width", 64}})->status,
            200);
}

TEST(ServerApi, Authentication) {
  SDPAL_REQUIRE_FIXTURES();
  server::ServeOptions o = demo_serve_options();
  o.host = "0.0.0.0";
  EXPECT_THROW(server::check_serve_options(o), Error) << "no auth on a public address";
  o.api_key = "s3cret";
  o.api_auth = "user:pa:ss";
  EXPECT_NO_THROW(server::check_serve_options(o));
  o.host = "127.0.0.1";
  TestServer s(o);
  auto c = s.client();
  EXPECT_EQ(c->Get("/health")->status, 200) << "health stays open for load balancers";
  EXPECT_EQ(c->Get("/")->status, 200) << "the page's files hold no data; the page asks for the key";
  const auto none = c->Get("/sdapi/v1/options");
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(body_json(none)["error"], "unauthorized");
  EXPECT_EQ(c->Post("/sdapi/v1/txt2img", "{}", "application/json")->status, 401);
  c->set_bearer_token_auth("wrong");
  EXPECT_EQ(c->Get("/sdapi/v1/options")->status, 401);
  c->set_bearer_token_auth("s3cret");
  EXPECT_EQ(c->Get("/sdapi/v1/options")->status, 200);
  auto b = s.client();
  b->set_basic_auth("user", "pa:ss");
  EXPECT_EQ(b->Get("/sdapi/v1/options")->status, 200);
  b->set_basic_auth("user", "nope");
  EXPECT_EQ(b->Get("/sdapi/v1/options")->status, 401);
}

TEST_F(TempDirTest, ServerLogsOneJsonLinePerRequestAndSavesImages) {
  SDPAL_REQUIRE_FIXTURES();
  fs::create_directory(path("out"));
  server::ServeOptions o = demo_serve_options();
  std::FILE* log = std::fopen(path("log.jsonl").c_str(), "w");
  ASSERT_TRUE(log);
  o.log = log;
  o.log_format = server::LogFormat::json;
  o.save_images = path("out");
  {
    TestServer s(o);
    auto c = s.client();
    c->Get("/health");
    post(*c, "/sdapi/v1/txt2img", {{"prompt", "x"}, {"steps", 2}, {"batch_size", 2}});
    c->Get("/nowhere");
  }
  std::fclose(log);
  std::ifstream f(path("log.jsonl"));
  std::vector<json> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["path"], "/health");
  EXPECT_EQ(lines[0]["queue_ms"], nullptr);
  EXPECT_EQ(lines[1]["method"], "POST");
  EXPECT_EQ(lines[1]["status"], 200);
  EXPECT_TRUE(lines[1]["queue_ms"].is_number_integer());
  EXPECT_GE(lines[1]["ms"].get<double>(), 0);
  EXPECT_EQ(lines[2]["status"], 404);
  int saved = 0;
  for (const auto& e : fs::directory_iterator(path("out"))) {
    EXPECT_EQ(e.path().extension(), ".png");
    EXPECT_TRUE(read_png(e.path().string()).text.count("parameters"));
    ++saved;
  }
  EXPECT_EQ(saved, 2);
}

TEST(ServerApi, TextLogLineNamesMethodPathStatusTimeAndQueueWait) {
  server::RequestLogEntry e{"POST", "/sdapi/v1/txt2img\n", "127.0.0.1", 200, 12.34, 5};
  const std::string line = server::format_log_line(e, server::LogFormat::text);
  EXPECT_NE(line.find("POST /sdapi/v1/txt2img\\x0a 200 12.3 ms queue 5 ms 127.0.0.1"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find('\n'), std::string::npos) << "no forged lines";
}

}  // namespace
}  // namespace sdpal::test

#include "server/api_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/png.h"
#include "models/taesd.h"
#include "pipeline/infotext.h"
#include "server/base64.h"
#include "server/connection_probe.h"
#include "server/job_queue.h"
#include "server/request_log.h"
#if __has_include("server/web_assets.h")
#include "server/web_assets.h"
#define SDPAL_HAS_WEB_PAGE 1
#endif

namespace sdpal::server {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Invalid UTF-8 cannot reach a response from a parsed body (the JSON parser refuses it), but a
// detail may cut a multi-byte character: replace rather than throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& error,
                const std::string& detail) {
  send_json(res, status, {{"error", error}, {"detail", detail}});
}

// Ends the connection after this response. Used when the request's body is left unread (a refused
// upload), where the next bytes on the connection are not a request. cpp-httplib decides from the
// request's Connection header, which the pre-routing hook may only read, so it is set on the
// library's own (mutable) request object.
void close_after(const httplib::Request& req) {
  auto& mutable_req = const_cast<httplib::Request&>(req);
  mutable_req.headers.erase("Connection");
  mutable_req.set_header("Connection", "close");
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Constant-time comparison: the time taken does not tell how much of a guessed key was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0;
}

// Where a request's log fields travel from the handler to the logger: cpp-httplib runs the
// pre-routing handler, the route and the logger of one request on the same thread, one after
// another, so the thread's own slot holds exactly the current request's.
struct RequestTiming {
  Clock::time_point start{};
  long queue_wait_ms = -1;
};
thread_local RequestTiming t_timing;

}  // namespace

void check_serve_options(const ServeOptions& o) {
  SDPAL_CHECK(is_loopback(o.host) || !o.api_key.empty() || !o.api_auth.empty(),
              "--host " + o.host +
                  " would open the server to other machines: give --api-key KEY or --api-auth "
                  "USER:PASS as well (or keep the default --host 127.0.0.1)");
  SDPAL_CHECK(o.api_auth.empty() || o.api_auth.find(':') != std::string::npos,
              "--api-auth must be USER:PASS");
  SDPAL_CHECK(o.port >= 0 && o.port <= 65535, "--port must be from 0 to 65535");
  SDPAL_CHECK(o.queue_size >= 1 && o.queue_size <= 4096, "--queue-size must be from 1 to 4096");
  SDPAL_CHECK(o.limits.max_size >= 8 && o.limits.max_size <= 8192 && o.limits.max_size % 8 == 0,
              "--max-size must be a multiple of 8 from 8 to 8192");
  SDPAL_CHECK(o.limits.max_steps >= 1 && o.limits.max_steps <= 1000,
              "--max-steps must be from 1 to 1000");
  SDPAL_CHECK(o.limits.max_batch >= 1 && o.limits.max_batch <= 64,
              "--max-batch must be from 1 to 64");
  SDPAL_CHECK(o.max_body >= 1024 && o.max_body <= (size_t(1) << 30),
              "--max-body must be from 1 KiB to 1 GiB");
  SDPAL_CHECK(o.read_timeout_s >= 1 && o.read_timeout_s <= 3600,
              "--read-timeout must be from 1 to 3600 seconds");
  SDPAL_CHECK(o.http_threads >= 0 && o.http_threads <= 1024,
              "--http-threads must be from 0 (automatic) to 1024");
  SDPAL_CHECK(o.save_images.empty() || std::filesystem::is_directory(o.save_images),
              "--save-images " + o.save_images + ": no such folder");
}

struct ApiServer::Impl {
  ServeOptions opt;
  Generator gen;
  JobQueue queue;
  httplib::Server http;
  int bound_port = -1;
  std::atomic<double> job_seconds{1.0};  // moving average, for Retry-After

  explicit Impl(ServeOptions o)
      : opt(std::move(o)),
        gen(ModelCatalog(opt.model, opt.models_dir), opt.load, opt.version, opt.save_images),
        queue(opt.queue_size) {
    const size_t threads = opt.http_threads > 0 ? size_t(opt.http_threads) : opt.queue_size + 8;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(opt.max_body);
    http.set_read_timeout(opt.read_timeout_s, 0);
    http.set_write_timeout(opt.read_timeout_s, 0);
    // An idle kept-alive connection holds a thread as a slow request does: the same bound.
    http.set_keep_alive_timeout(std::min(5, opt.read_timeout_s));
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return pre_route(req, res);
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404)
        send_error(res, 404, "not_found", "no endpoint " + req.path.substr(0, 200));
      else if (res.status == 405)
        send_error(res, 405, "method_not_allowed", req.method + " is not allowed here");
      else if (res.status == 413)
        send_error(res, 413, "payload_too_large", "the request body is larger than --max-body");
      else
        send_error(res, res.status, "bad_request",
                   "the request could not be read (HTTP " + std::to_string(res.status) + ")");
    });
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          send_error(res, 500, "internal_error", what);
        });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      log_request(req, res);
    });
    routes();
  }

  // Before the body is read: authentication, and the body's size from its Content-Length, so
  // that neither an unauthenticated client nor an oversized body costs the server a read.
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) {
    t_timing = {Clock::now(), -1};
    using HR = httplib::Server::HandlerResponse;
    if (!public_path(req) && !authorised(req)) {
      res.set_header("WWW-Authenticate",
                     opt.api_key.empty() ? "Basic realm=\"sdpal\"" : "Bearer realm=\"sdpal\"");
      send_error(res, 401, "unauthorized", "missing or wrong credentials");
      return HR::Handled;
    }
    if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      if (req.has_header("Transfer-Encoding")) {
        close_after(req);
        send_error(res, 411, "length_required",
                   "chunked request bodies are not accepted: send a Content-Length");
        return HR::Handled;
      }
      const std::string cl = req.get_header_value("Content-Length");
      const bool digits =
          !cl.empty() && cl.size() <= 19 && cl.find_first_not_of("0123456789") == std::string::npos;
      if (!digits) {
        close_after(req);
        send_error(res, 411, "length_required",
                   "a request body needs a valid Content-Length header");
        return HR::Handled;
      }
      if (std::stoull(cl) > opt.max_body) {
        close_after(req);
        send_error(res, 413, "payload_too_large",
                   "the request body of " + cl + " bytes is larger than this server's limit " +
                       "--max-body " + std::to_string(opt.max_body));
        return HR::Handled;
      }
    }
    return HR::Unhandled;
  }

  // Open without credentials: /health (for load balancers) and the web page's own files, which
  // hold no data (the page asks for the key and sends it with its API calls).
  static bool public_path(const httplib::Request& req) {
    if (req.path == "/health") return true;
#ifdef SDPAL_HAS_WEB_PAGE
    if ((req.method == "GET" || req.method == "HEAD") && find_web_asset(req.path)) return true;
#endif
    return false;
  }

  bool authorised(const httplib::Request& req) const {
    if (opt.api_key.empty() && opt.api_auth.empty()) return true;
    const std::string h = req.get_header_value("Authorization");
    if (!opt.api_key.empty() && h.rfind("Bearer ", 0) == 0 && same_secret(h.substr(7), opt.api_key))
      return true;
    if (!opt.api_auth.empty() && h.rfind("Basic ", 0) == 0) {
      std::string why;
      const auto raw = base64_decode(h.substr(6), &why);
      if (raw && same_secret(std::string(raw->begin(), raw->end()), opt.api_auth)) return true;
    }
    return false;
  }

  void log_request(const httplib::Request& req, const httplib::Response& res) {
    if (!opt.log) return;
    RequestLogEntry e;
    e.method = req.method;
    e.path = req.path;
    e.status = res.status;
    e.remote = req.remote_addr;
    if (t_timing.start != Clock::time_point{})
      e.ms = std::chrono::duration<double, std::milli>(Clock::now() - t_timing.start).count();
    e.queue_wait_ms = t_timing.queue_wait_ms;
    const std::string line = format_log_line(e, opt.log_format);
    std::fprintf(opt.log, "%s\n", line.c_str());
    std::fflush(opt.log);
    t_timing = {};
  }

  // Runs `work` on the worker and waits for it; false (the response already filled in) when the
  // queue is full or the client went away while waiting.
  bool run_queued(const httplib::Request& req, httplib::Response& res,
                  std::function<void(Job&)> work) {
    const auto job = queue.submit(std::move(work));
    if (!job) {
      const int retry = std::max(1, int(std::ceil(job_seconds.load())));
      res.set_header("Retry-After", std::to_string(retry));
      send_error(res, 503, "queue_full",
                 "the queue is full (" + std::to_string(queue.capacity()) +
                     " requests wait, --queue-size); retry in about " + std::to_string(retry) +
                     " s");
      return false;
    }
    const ConnectionProbe probe(req.local_port, req.remote_addr, req.remote_port);
    while (!job->wait_for(std::chrono::milliseconds(100))) {
      if (probe.peer_closed()) {
        // Queued: removed, it never runs. Running: interrupted at its next step.
        queue.cancel(job);
        job->wait_for(std::chrono::hours(1));
        t_timing.queue_wait_ms = long(job->queue_wait().count());
        send_error(res, 499, "client_closed", "the client closed the connection");
        return false;
      }
    }
    t_timing.queue_wait_ms = long(job->queue_wait().count());
    res.set_header("X-Queue-Wait-Ms", std::to_string(t_timing.queue_wait_ms));
    if (job->state() == Job::State::cancelled) {
      send_error(res, 503, "shutting_down", "the server is stopping");
      return false;
    }
    return true;
  }

  // What a job reports back to its HTTP thread.
  struct Outcome {
    std::optional<GeneratedImages> images;
    std::optional<RequestError> error;
    std::string internal;
  };

  static void capture(Outcome& out, const std::function<void()>& f) {
    try {
      f();
    } catch (const RequestError& e) {
      out.error = e;
    } catch (const std::exception& e) {
      out.internal = e.what();
    }
  }

  // Sends the outcome's error, if any; true if there was one.
  static bool send_failure(httplib::Response& res, const Outcome& o) {
    if (o.error) {
      send_error(res, o.error->status(), o.error->error(), o.error->detail());
      return true;
    }
    if (!o.internal.empty()) {
      send_error(res, 500, "internal_error", o.internal);
      return true;
    }
    return false;
  }

  void generate(const httplib::Request& req, httplib::Response& res,
                GenerationRequest (*parse)(std::string_view, const Limits&)) {
    std::shared_ptr<GenerationRequest> r;
    try {
      r = std::make_shared<GenerationRequest>(parse(req.body, opt.limits));
    } catch (const RequestError& e) {
      send_error(res, e.status(), e.error(), e.detail());
      return;
    }
    auto out = std::make_shared<Outcome>();
    const bool ran = run_queued(req, res, [this, r, out](Job& job) {
      const auto t0 = Clock::now();
      capture(*out, [&] { out->images = gen.run(*r, job); });
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      job_seconds.store(0.8 * job_seconds.load() + 0.2 * s);
    });
    if (!ran || send_failure(res, *out)) return;
    const GeneratedImages& g = *out->images;
    json images = json::array();
    if (r->send_images)
      for (const auto& png : g.pngs) images.push_back(base64_encode(png));
    if (r->style == ResponseStyle::openai) {
      json data = json::array();
      for (const auto& b64 : images)
        data.push_back({{"b64_json", b64}, {"revised_prompt", nullptr}});
      send_json(res, 200,
                {{"created", std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count()},
                 {"data", data}});
      return;
    }
    // A1111: info is the Processed.js() JSON as a string, parameters the request as run.
    send_json(res, 200, {{"images", images}, {"parameters", g.parameters}, {"info", dump(g.info)}});
  }

  json options_json() const {
    return {{"sd_model_checkpoint", gen.current_model()},
            {"sdpal_int8", gen.current_int8()},
            {"samples_format", "png"},
            {"CLIP_stop_at_last_layers", 1},
            {"token_merging_ratio", 0},
            {"eta_ddim", 0},
            {"live_previews_enable", true},
            {"sdpal_queue_size", queue.capacity()},
            {"sdpal_max_size", opt.limits.max_size},
            {"sdpal_max_steps", opt.limits.max_steps},
            {"sdpal_max_batch", opt.limits.max_batch}};
  }

  json progress_json(bool skip_image) const {
    const ProgressSnapshot p = gen.progress();
    const size_t waiting = queue.waiting();
    double progress = 0, eta = 0;
    if (p.active && p.steps > 0 && p.batches > 0) {
      progress = (p.batch + double(p.step) / p.steps) / p.batches;
      if (progress > 0) eta = p.elapsed_s / progress - p.elapsed_s;
    }
    json current_image = nullptr;
    if (!skip_image && p.active && p.latents && p.previewer) {
      Tensor img = p.previewer->decode(*p.latents);
      for (int64_t i = 0; i < img.numel(); ++i) img[i] = std::clamp(img[i], 0.f, 1.f);
      const Image rgb = tensor_to_image(img, 0);
      current_image = base64_encode(encode_png(rgb.rgb.data(), rgb.width, rgb.height));
    }
    const int job_count = int(waiting) + (p.active ? 1 : 0);
    return {{"progress", progress},
            {"eta_relative", eta},
            {"state",
             {{"skipped", false},
              {"interrupted", false},
              {"stopping_generation", false},
              {"job", p.active ? "txt2img" : ""},
              {"job_count", job_count},
              {"job_timestamp", p.job_timestamp},
              {"job_no", p.batch},
              {"sampling_step", p.step},
              {"sampling_steps", p.steps}}},
            {"current_image", current_image},
            {"textinfo", nullptr},
            {"current_task", nullptr}};
  }

  void routes() {
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                {{"status", "ok"},
                 {"model", gen.current_model()},
                 {"busy", queue.busy()},
                 {"queued", queue.waiting()},
                 {"queue_size", queue.capacity()},
                 {"version", opt.version}});
    });
    http.Get("/sdapi/v1/samplers", [](const httplib::Request&, httplib::Response& res) {
      json list = json::array();
      for (const SamplerName& s : sampler_names())
        list.push_back({{"name", s.display}, {"aliases", {s.id}}, {"options", json::object()}});
      send_json(res, 200, list);
    });
    http.Get("/sdapi/v1/schedulers", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                json::array({{{"name", "automatic"},
                              {"label", "Automatic"},
                              {"aliases", nullptr},
                              {"default_rho", -1},
                              {"need_inner_model", false}},
                             {{"name", "karras"},
                              {"label", "Karras"},
                              {"aliases", nullptr},
                              {"default_rho", 7.0},
                              {"need_inner_model", false}}}));
    });
    http.Get("/sdapi/v1/sd-models", [this](const httplib::Request&, httplib::Response& res) {
      json list = json::array();
      // Names only: the server's file system layout is none of the client's business.
      for (const ModelEntry& m : gen.catalog().list())
        list.push_back({{"title", m.name},
                        {"model_name", m.name},
                        {"hash", nullptr},
                        {"sha256", nullptr},
                        {"filename", m.name},
                        {"config", nullptr}});
      send_json(res, 200, list);
    });
    http.Get("/sdapi/v1/options", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, options_json());
    });
    http.Post("/sdapi/v1/options", [this](const httplib::Request& req, httplib::Response& res) {
      OptionsUpdate u;
      try {
        u = parse_options_update(req.body);
      } catch (const RequestError& e) {
        send_error(res, e.status(), e.error(), e.detail());
        return;
      }
      if (!u.model && !u.int8) {
        send_json(res, 200, nullptr);
        return;
      }
      // The model is the worker's: the switch waits its turn behind queued generations.
      auto out = std::make_shared<Outcome>();
      const bool ran = run_queued(req, res, [this, u, out](Job&) {
        capture(*out, [&] { gen.switch_to(u.model.value_or(gen.current_model()), u.int8); });
      });
      if (!ran || send_failure(res, *out)) return;
      send_json(res, 200, nullptr);
    });
    http.Get("/sdapi/v1/progress", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string skip = req.get_param_value("skip_current_image");
      send_json(res, 200, progress_json(skip == "true" || skip == "1"));
    });
    http.Post("/sdapi/v1/interrupt", [this](const httplib::Request&, httplib::Response& res) {
      queue.interrupt_current();
      send_json(res, 200, json::object());
    });
    http.Post("/sdapi/v1/png-info", [](const httplib::Request& req, httplib::Response& res) {
      try {
        const Image img = parse_png_info(req.body);
        const auto it = img.text.find("parameters");
        const std::string info = it == img.text.end() ? "" : it->second;
        json items = json::object();
        for (const auto& [k, v] : img.text) items[k] = v;
        json params = json::object();
        if (!info.empty()) {
          try {
            const GenerationInfo g = parse_a1111_parameters(info);
            params = {{"Prompt", g.prompt},       {"Negative prompt", g.negative_prompt},
                      {"Steps", g.steps},         {"Sampler", g.sampler},
                      {"CFG scale", g.cfg_scale}, {"Seed", g.seed},
                      {"Size-1", g.width},        {"Size-2", g.height}};
            if (!g.model.empty()) params["Model"] = g.model;
            if (!g.schedule_type.empty()) params["Schedule type"] = g.schedule_type;
            for (const auto& [k, v] : g.extra) params[k] = v;
          } catch (const Error& e) {
            params = {{"error", e.what()}};
          }
        }
        send_json(res, 200, {{"info", info}, {"items", items}, {"parameters", params}});
      } catch (const RequestError& e) {
        send_error(res, e.status(), e.error(), e.detail());
      }
    });
    http.Post("/sdapi/v1/txt2img", [this](const httplib::Request& req, httplib::Response& res) {
      generate(req, res, parse_txt2img);
    });
    http.Post("/sdapi/v1/img2img", [this](const httplib::Request& req, httplib::Response& res) {
      generate(req, res, parse_img2img);
    });
    http.Post("/v1/images/generations",
              [this](const httplib::Request& req, httplib::Response& res) {
                generate(req, res, parse_openai_generation);
              });
#ifdef SDPAL_HAS_WEB_PAGE
    // The embedded web page: exact names only, no file system behind them.
    http.Get(R"(/([A-Za-z0-9._-]*))", [](const httplib::Request& req, httplib::Response& res) {
      const WebAsset* a = find_web_asset(req.path);
      if (!a) {
        send_error(res, 404, "not_found", "no endpoint " + req.path.substr(0, 200));
        return;
      }
      res.set_content(std::string(a->body), std::string(a->content_type).c_str());
    });
#endif
  }
};

ApiServer::ApiServer(ServeOptions o) {
  check_serve_options(o);
  impl_ = std::make_unique<Impl>(std::move(o));
}

ApiServer::~ApiServer() { stop(); }

int ApiServer::bind() {
  const Impl& c = *impl_;
  if (c.opt.port == 0) {
    impl_->bound_port = impl_->http.bind_to_any_port(c.opt.host);
  } else {
    impl_->bound_port = impl_->http.bind_to_port(c.opt.host, c.opt.port) ? c.opt.port : -1;
  }
  SDPAL_CHECK(impl_->bound_port > 0, "cannot listen on " + c.opt.host + ":" +
                                         std::to_string(c.opt.port) +
                                         " (in use, or not an address of this machine)");
  // Room for a burst of connections beyond the library's backlog of 5 (they wait in the kernel
  // until a connection thread takes them; the queue then answers 503 where it is full).
  widen_listen_backlog(impl_->bound_port, 1024);
  return impl_->bound_port;
}

int ApiServer::port() const { return impl_->bound_port; }

void ApiServer::run() { impl_->http.listen_after_bind(); }

void ApiServer::stop() {
  if (!impl_) return;
  // Waiting requests are answered (503) rather than left to finish: the listener's shutdown waits
  // for every handler.
  impl_->queue.shutdown();
  impl_->http.stop();
}

}  // namespace sdpal::server

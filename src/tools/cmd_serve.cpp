// `sdpal serve`: keeps a model loaded and serves the A1111 and OpenAI image APIs over HTTP
// (src/server, docs/serve.md).
#include <csignal>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "pipeline/sd_model.h"
#include "server/api_server.h"
#include "tools/command.h"
#include "tools/options.h"
#include "tools/version.h"

namespace sdpal {
namespace {

struct ServeArgs {
  ModelArgs model;
  server::ServeOptions serve;
  std::string taesd, log_format = "text";
};

void run(ServeArgs a) {
  server::ServeOptions o = a.serve;
  o.model = a.model.path;
  if (o.model.empty() && o.models_dir.empty()) {
    o.model = default_model_path();
    SDPAL_CHECK(!o.model.empty(),
                "no --model given and the built-in demo model (models/demo-fashion) was not found");
  }
  o.load.variant = a.model.variant;
  o.load.prediction_type = a.model.prediction_type;
  o.load.tokenizer = a.model.tokenizer;
  o.load.int8 = a.model.int8 || !a.model.int8_calibration.empty();
  o.load.int8_calibration = a.model.int8_calibration;
  o.load.taesd = a.taesd;
  o.load.threads = a.model.threads;
  o.log_format = a.log_format == "json" ? server::LogFormat::json : server::LogFormat::text;
  o.version = std::string("sdpal ") + SDPAL_VERSION;
  server::check_serve_options(o);  // before the model load, so that a bad flag fails at once
  apply_threads(a.model.threads);

  // SIGINT / SIGTERM stop the server cleanly: a thread waits for them (blocked everywhere else).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  server::ApiServer srv(o);
  const int port = srv.bind();
  std::fprintf(stderr, "sdpal serve: listening on http://%s:%d/ (model %s)\n", o.host.c_str(), port,
               o.model.empty() ? "from --models-dir" : o.model.c_str());
  std::thread watcher([&srv, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "sdpal serve: signal %d, stopping\n", sig);
    srv.stop();
  });
  srv.run();
  // run() also returns on its own (a listen error): wake the watcher so it can be joined.
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
}

const bool registered = register_command(
    {"serve", "Serve the A1111 and OpenAI image APIs and a web page over HTTP (docs/serve.md)",
     [](CLI::App& app) {
       auto a = std::make_shared<ServeArgs>();
       server::ServeOptions& s = a->serve;
       add_model_options(app, a->model);
       add_int8_options(app, a->model);
       app.add_option("--models-dir", s.models_dir,
                      "Folder of models a request may switch to by name (diffusers folders, "
                      "sdpal-compressed folders, .safetensors files; without --model, its first "
                      "one is loaded)");
       app.add_option("--host", s.host,
                      "Address to listen on; anything but loopback needs --api-key or --api-auth")
           ->capture_default_str();
       app.add_option("--port", s.port, "TCP port (0: any free port)")->capture_default_str();
       // From the environment too: a secret on the command line shows in `ps`.
       app.add_option(
              "--api-key", s.api_key,
              "Require 'Authorization: Bearer KEY' on every request but /health and the web "
              "page's own files")
           ->envname("SDPAL_API_KEY");
       app.add_option("--api-auth", s.api_auth,
                      "Require HTTP Basic auth USER:PASS, as --api-key (A1111's "
                      "--api-auth)")
           ->envname("SDPAL_API_AUTH");
       app.add_option("--queue-size", s.queue_size,
                      "Generations that may wait while one runs; more get 503 with Retry-After")
           ->capture_default_str();
       app.add_option("--max-size", s.limits.max_size,
                      "Largest width or height a request may ask for, in pixels")
           ->capture_default_str();
       app.add_option("--max-steps", s.limits.max_steps, "Most sampling steps per request")
           ->capture_default_str();
       app.add_option("--max-batch", s.limits.max_batch,
                      "Most images per request (batch_size x n_iter, or OpenAI's n)")
           ->capture_default_str();
       app.add_option("--max-body", s.max_body,
                      "Largest request body in bytes; larger ones get 413 without being read")
           ->capture_default_str();
       app.add_option("--read-timeout", s.read_timeout_s,
                      "Seconds a client may stall while sending a request before it is cut off")
           ->capture_default_str();
       app.add_option("--http-threads", s.http_threads,
                      "Connections handled at once (0: --queue-size + 8)")
           ->capture_default_str();
       app.add_option("--save-images", s.save_images,
                      "Also save every generated PNG into this existing folder (off by default)");
       app.add_option("--lora-dir", s.load.lora_dir,
                      "Folder of LoRA files that <lora:name:weight> tags in prompts may name");
       app.add_option("--embeddings-dir", s.load.embeddings_dir,
                      "Folder of textual-inversion embeddings used where their names appear in "
                      "prompts");
       app.add_option("--taesd", a->taesd,
                      "TAESD folder: live previews in /sdapi/v1/progress and the "
                      "sdpal_taesd_decode setting (default: <model>/taesd when present)");
       app.add_option("--log-format", a->log_format,
                      "Request log on stderr, one line per request: text | json")
           ->capture_default_str()
           ->check(CLI::IsMember({"text", "json"}));
       app.callback([a] { run(*a); });
     }});

}  // namespace
}  // namespace sdpal

// `sdpal serve` against bad requests: a table of malformed ones (broken and hostile JSON, wrong
// types, absurd numbers, invalid UTF-8, bad base64 and images, traversal in model names, broken
// HTTP framing, a 4 GB Content-Length, slow-loris clients). Each must get its 4xx with a JSON
// {error, detail} body, and the server must keep serving after every one.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "formats/png.h"
#include "server/base64.h"
#include "support/fixtures.h"
#include "support/server_harness.h"

namespace sdpal::test {
namespace {

using json = nlohmann::json;

struct BadRequest {
  std::string name, method, path, body;
  int status;
  std::string error;  // the expected "error" field
};

std::string png_b64(int w, int h) {
  Image img{w, h, std::vector<uint8_t>(size_t(w) * h * 3, 90), {}};
  return b64_png(img);
}

std::vector<uint8_t> small_png() {
  Image img{8, 8, std::vector<uint8_t>(8 * 8 * 3, 1), {}};
  return encode_png(img.rgb.data(), 8, 8);
}

// A PNG whose header claims 2^31-ish pixels per side.
std::string huge_png_b64() {
  std::vector<uint8_t> png = small_png();
  for (int i : {16, 17, 20, 21}) png[i] = 0x7f;
  return server::base64_encode(png);
}

std::string truncated_png_b64() {
  std::vector<uint8_t> png = small_png();
  png.resize(png.size() / 2);
  return server::base64_encode(png);
}

std::string b64(const std::string& s) {
  return server::base64_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::vector<BadRequest> bad_requests() {
  const std::string t2i = "/sdapi/v1/txt2img", i2i = "/sdapi/v1/img2img";
  const std::string init = "\"init_images\":[\"" + png_b64(32, 32) + "\"]";
  const std::string oai = "/v1/images/generations";
  return {
      {"empty body", "POST", t2i, "", 400, "invalid_json"},
      {"truncated JSON", "POST", t2i, "{\"prompt\": \"a", 400, "invalid_json"},
      {"truncated after key", "POST", t2i, "{\"prompt\":", 400, "invalid_json"},
      {"array, not object", "POST", t2i, "[1,2]", 400, "invalid_json"},
      {"string, not object", "POST", t2i, "\"a sneaker\"", 400, "invalid_json"},
      {"null body", "POST", t2i, "null", 400, "invalid_json"},
      {"trailing garbage", "POST", t2i, "{\"prompt\":\"x\"} xyz", 400, "invalid_json"},
      {"invalid UTF-8", "POST", t2i, "{\"prompt\":\"\xff\xfe\"}", 400, "invalid_json"},
      {"overlong UTF-8", "POST", t2i, "{\"prompt\":\"\xc0\xaf\"}", 400, "invalid_json"},
      {"lone surrogate", "POST", t2i, "{\"prompt\":\"\\ud800\"}", 400, "invalid_json"},
      {"NaN literal", "POST", t2i, "{\"cfg_scale\": NaN}", 400, "invalid_json"},
      {"deep nesting", "POST", t2i, std::string(5000, '[') + std::string(5000, ']'), 400,
       "invalid_json"},
      {"width as string", "POST", t2i, "{\"width\":\"512\"}", 422, "invalid_field"},
      {"negative width", "POST", t2i, "{\"width\":-64}", 422, "invalid_field"},
      {"zero height", "POST", t2i, "{\"height\":0}", 422, "invalid_field"},
      {"width not a multiple of 8", "POST", t2i, "{\"width\":100}", 422, "invalid_field"},
      {"huge float width", "POST", t2i, "{\"width\":1e30}", 422, "invalid_field"},
      {"width beyond uint64", "POST", t2i, "{\"width\":99999999999999999999999}", 422,
       "invalid_field"},
      {"width above the limit", "POST", t2i, "{\"width\":4096}", 400, "limit_exceeded"},
      {"negative steps", "POST", t2i, "{\"steps\":-1}", 422, "invalid_field"},
      {"zero steps", "POST", t2i, "{\"steps\":0}", 422, "invalid_field"},
      {"steps overflow", "POST", t2i, "{\"steps\":1e400}", 400, "invalid_json"},
      {"steps above the limit", "POST", t2i, "{\"steps\":100000}", 400, "limit_exceeded"},
      {"cfg as word", "POST", t2i, "{\"cfg_scale\":\"high\"}", 422, "invalid_field"},
      {"cfg out of range", "POST", t2i, "{\"cfg_scale\":1e300}", 422, "invalid_field"},
      {"seed below -1", "POST", t2i, "{\"seed\":-5}", 422, "invalid_field"},
      {"seed beyond int64", "POST", t2i, "{\"seed\":18446744073709551615}", 422, "invalid_field"},
      {"fractional seed", "POST", t2i, "{\"seed\":1.5}", 422, "invalid_field"},
      {"prompt as number", "POST", t2i, "{\"prompt\":42}", 422, "invalid_field"},
      {"prompt with NUL", "POST", t2i, "{\"prompt\":\"a\\u0000b\"}", 422, "invalid_field"},
      {"zero batch", "POST", t2i, "{\"batch_size\":0}", 422, "invalid_field"},
      {"batch above the limit", "POST", t2i, "{\"batch_size\":1000000}", 400, "limit_exceeded"},
      {"negative n_iter", "POST", t2i, "{\"n_iter\":-1}", 422, "invalid_field"},
      {"unknown sampler", "POST", t2i, "{\"sampler_name\":\"Bogus\"}", 400, "unknown_sampler"},
      {"sampler as number", "POST", t2i, "{\"sampler_name\":5}", 422, "invalid_field"},
      {"unknown scheduler", "POST", t2i, "{\"scheduler\":\"exponential\"}", 400,
       "unknown_scheduler"},
      {"hires fix", "POST", t2i, "{\"enable_hr\":true}", 400, "not_supported"},
      {"override_settings not an object", "POST", t2i, "{\"override_settings\":\"x\"}", 422,
       "invalid_field"},
      {"unknown sdpal setting", "POST", t2i, "{\"override_settings\":{\"sdpal_bogus\":1}}", 422,
       "invalid_field"},
      {"clip skip out of range", "POST", t2i,
       "{\"override_settings\":{\"CLIP_stop_at_last_layers\":99}}", 422, "invalid_field"},
      {"traversal in override model", "POST", t2i,
       "{\"prompt\":\"x\",\"override_settings\":{\"sd_model_checkpoint\":\"../../etc/passwd\"}}",
       400, "model_not_found"},
      {"absolute path as model", "POST", "/sdapi/v1/options",
       "{\"sd_model_checkpoint\":\"/etc/passwd\"}", 400, "model_not_found"},
      {"unknown option", "POST", "/sdapi/v1/options", "{\"outdir_samples\":\"/tmp\"}", 400,
       "not_supported"},
      {"img2img without image", "POST", i2i, "{\"prompt\":\"x\"}", 400, "missing_field"},
      {"init_images not a list", "POST", i2i, "{\"init_images\":\"abc\"}", 422, "invalid_field"},
      {"init image not a string", "POST", i2i, "{\"init_images\":[7]}", 422, "invalid_field"},
      {"two init images", "POST", i2i,
       "{\"init_images\":[\"" + png_b64(8, 8) + "\",\"" + png_b64(8, 8) + "\"]}", 400,
       "not_supported"},
      {"bad base64", "POST", i2i, "{\"init_images\":[\"!!!!\"]}", 400, "invalid_base64"},
      {"base64 with bad length", "POST", i2i, "{\"init_images\":[\"QUJDR\"]}", 400,
       "invalid_base64"},
      {"data after padding", "POST", i2i, "{\"init_images\":[\"QQ==QUJD\"]}", 400,
       "invalid_base64"},
      {"text, not an image", "POST", i2i,
       "{\"init_images\":[\"" + b64("hello, this is not an image") + "\"]}", 400, "invalid_image"},
      {"GIF image", "POST", i2i, "{\"init_images\":[\"" + b64("GIF89a\x01\x00\x01\x00") + "\"]}",
       400, "invalid_image"},
      {"truncated PNG", "POST", i2i, "{\"init_images\":[\"" + truncated_png_b64() + "\"]}", 400,
       "invalid_image"},
      {"PNG claiming 2^31 pixels a side", "POST", i2i,
       "{\"init_images\":[\"" + huge_png_b64() + "\"]}", 400, "invalid_image"},
      {"truncated JPEG", "POST", i2i,
       "{\"init_images\":[\"" + b64("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01") + "\"]}", 400,
       "invalid_image"},
      {"data URL without base64", "POST", i2i, "{\"init_images\":[\"data:image/png,abc\"]}", 400,
       "invalid_image"},
      {"strength above 1", "POST", i2i, "{" + init + ",\"denoising_strength\":2}", 422,
       "invalid_field"},
      {"zero strength", "POST", i2i, "{" + init + ",\"denoising_strength\":0}", 422,
       "invalid_field"},
      {"bad resize mode", "POST", i2i, "{" + init + ",\"resize_mode\":7}", 422, "invalid_field"},
      {"bad mask base64", "POST", i2i, "{" + init + ",\"mask\":\"%%%\"}", 400, "invalid_base64"},
      {"png-info without image", "POST", "/sdapi/v1/png-info", "{}", 400, "missing_field"},
      {"png-info image as number", "POST", "/sdapi/v1/png-info", "{\"image\":1}", 422,
       "invalid_field"},
      {"OpenAI size word", "POST", oai, "{\"prompt\":\"x\",\"size\":\"big\"}", 422,
       "invalid_field"},
      {"OpenAI negative size", "POST", oai, "{\"prompt\":\"x\",\"size\":\"-512x512\"}", 422,
       "invalid_field"},
      {"OpenAI zero n", "POST", oai, "{\"prompt\":\"x\",\"n\":0}", 422, "invalid_field"},
      {"OpenAI without prompt", "POST", oai, "{\"n\":1}", 400, "missing_field"},
      {"unknown endpoint", "GET", "/sdapi/v1/nothing", "", 404, "not_found"},
      {"traversal path", "GET", "/../../etc/passwd", "", 404, "not_found"},
      {"encoded traversal", "GET", "/%2e%2e/%2e%2e/etc/passwd", "", 404, "not_found"},
  };
}

// Raw HTTP that no client library would send.
struct RawBad {
  std::string name, bytes;
  int status;  // expected status line
};

std::vector<RawBad> raw_bad_requests() {
  const std::string post = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\n";
  return {
      {"4 GB Content-Length", post + "Content-Length: 4294967296\r\n\r\n{\"prompt\":", 413},
      {"Content-Length beyond 64 bits", post + "Content-Length: 99999999999999999999999\r\n\r\n",
       411},
      {"negative Content-Length", post + "Content-Length: -1\r\n\r\n", 411},
      {"chunked body", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411},
      {"no Content-Length", post + "Connection: close\r\n\r\n", 411},
      {"garbage request line", "HELLO WORLD\r\n\r\n", 400},
      {"URI too long", "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
  };
}

std::string status_line(int status) { return "HTTP/1.1 " + std::to_string(status) + " "; }

TEST(ServerBadRequests, EachGetsItsStatusAndTheServerKeepsServing) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(demo_serve_options());
  auto c = s.client();
  const auto table = bad_requests();
  const auto raw = raw_bad_requests();
  EXPECT_GE(table.size() + raw.size() + 2, 40u);
  for (const BadRequest& b : table) {
    SCOPED_TRACE(b.name);
    const httplib::Result r =
        b.method == "GET" ? c->Get(b.path) : c->Post(b.path, b.body, "application/json");
    ASSERT_TRUE(r) << b.name << ": no response";
    EXPECT_EQ(r->status, b.status) << b.name << ": " << r->body.substr(0, 300);
    const json j = body_json(r);
    EXPECT_EQ(j.value("error", ""), b.error) << b.name << ": " << r->body.substr(0, 300);
    EXPECT_FALSE(j.value("detail", "").empty()) << b.name;
    ASSERT_EQ(c->Get("/health")->status, 200) << "after " << b.name;
  }
  for (const RawBad& b : raw) {
    SCOPED_TRACE(b.name);
    const RawExchange r = raw_exchange(s.port(), b.bytes, 5, false);
    EXPECT_EQ(r.response.rfind(status_line(b.status), 0), 0u)
        << b.name << ": " << r.response.substr(0, 200);
    EXPECT_LT(r.seconds, 4.5) << b.name << ": the server kept the connection open";
    ASSERT_EQ(c->Get("/health")->status, 200) << "after " << b.name;
  }
  // And it still generates.
  const auto ok =
      c->Post("/sdapi/v1/txt2img", R"({"prompt":"a bag","steps":2})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST(ServerBadRequests, A4GBBodyIsRefusedBeforeItIsRead) {
  SDPAL_REQUIRE_FIXTURES();
  TestServer s(demo_serve_options());
  // The client would send 4 GB; the answer comes at once, after the headers alone, and the
  // connection is closed (within the read timeout, 2 s here) rather than drained.
  const RawExchange r = raw_exchange(
      s.port(),
      "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 4294967296\r\n\r\n", 5);
  EXPECT_EQ(r.response.rfind("HTTP/1.1 413 ", 0), 0u) << r.response.substr(0, 200);
  EXPECT_NE(r.response.find("--max-body"), std::string::npos);
  EXPECT_LT(r.first_byte_s, 1.0);
  EXPECT_TRUE(r.closed);
  EXPECT_LT(r.seconds, 3.5);
}

TEST(ServerBadRequests, SlowLorisClientsAreCutOffAfterTheReadTimeout) {
  SDPAL_REQUIRE_FIXTURES();
  server::ServeOptions o = demo_serve_options();
  o.read_timeout_s = 1;
  TestServer s(o);
  // Half a body, then silence.
  const RawExchange body = raw_exchange(
      s.port(),
      "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":", 6);
  EXPECT_TRUE(body.closed) << "partial body: connection still open after 6 s";
  EXPECT_LT(body.seconds, 4);
  if (!body.response.empty()) {
    EXPECT_EQ(body.response.rfind("HTTP/1.1 4", 0), 0u);
  }
  // Half the headers, then silence.
  const RawExchange head =
      raw_exchange(s.port(), "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Le", 6);
  EXPECT_TRUE(head.closed) << "partial headers: connection still open after 6 s";
  EXPECT_LT(head.seconds, 4);
  auto c = s.client();
  EXPECT_EQ(c->Get("/health")->status, 200);
}

}  // namespace
}  // namespace sdpal::test

// A1111 infotext (pipeline/infotext.h): the `parameters` text of PNGs from anywhere. Two
// properties: parsing is a fixed point of formatting (parse(text) = info, then
// parse(a1111_parameters(info)) = info for any text that parses), and formatting a structured
// GenerationInfo built from the input (plain prompts, arbitrary numbers and values) parses back to
// the same info, every number to the same bits (a1111_number's shortest round-trip digits).
#include <cmath>

#include "fuzz/fuzz_support.h"
#include "pipeline/infotext.h"

using namespace sdpal;

namespace {

// Letters, digits and spaces only, no leading/trailing space: survives strip and line parsing.
std::string plain(std::string s) {
  for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? c : ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  return s;
}

double finite(double v, double fallback) { return std::isfinite(v) ? v : fallback; }

// Any printable text for a field value (quoted by the writer when it holds , : or newline).
std::string value_text(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) c = 'x';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  return s;
}

void structured_round_trip(const uint8_t* data, size_t size) {
  fuzz::Bytes in(data, size);
  GenerationInfo g;
  g.steps = in.take<int>();
  g.cfg_scale = finite(in.take<double>(), 7);
  g.seed = in.take<uint64_t>();
  g.width = in.take<int>();
  g.height = in.take<int>();
  const uint8_t flags = in.take<uint8_t>();
  if (flags & 1) g.denoising_strength = finite(in.take<double>(), 0.5);
  g.clip_skip = 1 + (flags >> 1) % 4;
  if (flags & 32) g.token_merging_ratio = std::fabs(finite(in.take<double>(), 0.25));
  static const char* samplers[] = {"Euler a", "Euler", "DDIM", "DPM++ 2M", "PLMS"};
  g.sampler = samplers[in.take<uint8_t>() % 5];
  if (flags & 64) g.schedule_type = "Karras";
  if (flags & 128) g.rng = "CPU";
  g.model = value_text(in.take_string(12));
  g.model_hash = plain(in.take_string(10));
  g.version = value_text(in.take_string(12));
  g.negative_prompt = plain(in.take_string(20));
  g.prompt = plain(in.rest());
  if (g.prompt.empty()) g.prompt = "p";  // an empty prompt line would hold the negative prompt
  const std::string text = a1111_parameters(g);
  const GenerationInfo back = parse_a1111_parameters(text);
  FUZZ_CHECK(back == g, "formatted info does not parse back:\n" + text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FUZZ_EXPECT_ERRORS({
    GenerationInfo info = parse_a1111_parameters(std::string(fuzz::as_text(data, size)));
    // Documented: fields with no value are left out when writing, so an unknown field read with
    // an empty value ("Lora hashes: ") is not written back.
    std::erase_if(info.extra, [](const auto& kv) { return kv.second.empty(); });
    const std::string text = a1111_parameters(info);
    const GenerationInfo again = fuzz::must_succeed([&] { return parse_a1111_parameters(text); },
                                                    "parsing formatted infotext");
    FUZZ_CHECK(again == info, "parse is not a fixed point of format:\n" + text);
  });
  structured_round_trip(data, size);
  return 0;
}

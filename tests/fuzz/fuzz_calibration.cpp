// int8 calibration files (models/int8_calibration.h, read by `generate --int8` and `analyze
// --int8`) and int8 analysis documents (compression/int8_analysis.h, resumed by `analyze
// --int8`). The first input byte picks the reader, the rest is the file. Invariants: to_json /
// from_json is an identity; calibration ranges are finite with min <= max and give a usable
// activation quantisation (finite positive scale); the analysis summary renders.
#include <cmath>

#include "compression/int8_analysis.h"
#include "fuzz/fuzz_support.h"
#include "models/int8_calibration.h"

using namespace sdpal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string path = fuzz::scratch().write("int8.json", fuzz::as_text(data + 1, size - 1));
  FUZZ_EXPECT_ERRORS({
    if (data[0] % 2 == 0) {
      const Int8Calibration c = read_int8_calibration(path);
      const auto j = c.to_json();
      const auto again = fuzz::must_succeed(
          [&] { return Int8Calibration::from_json(j, "round trip"); }, "re-reading a calibration");
      FUZZ_CHECK(again.to_json() == j, "calibration to_json/from_json is not an identity");
      for (const LayerRange& l : c.layers) {
        FUZZ_CHECK(std::isfinite(l.min) && std::isfinite(l.max) && l.min <= l.max,
                   l.name + ": range");
        FUZZ_CHECK(std::isfinite(l.gflops) && l.gflops >= 0, l.name + ": gflops");
        const k::ActQuant q = l.act();
        FUZZ_CHECK(std::isfinite(q.scale) && q.scale > 0, l.name + ": quantisation scale");
      }
      (void)int8_calibration_digest(c);
    } else {
      const Int8Analysis a = read_int8_analysis(path);
      const auto j = a.to_json();
      const auto again = fuzz::must_succeed(
          [&] { return Int8Analysis::from_json(j, "round trip"); }, "re-reading an int8 analysis");
      FUZZ_CHECK(again.to_json() == j, "int8 analysis to_json/from_json is not an identity");
      (void)int8_analysis_markdown(a);
    }
  });
  return 0;
}

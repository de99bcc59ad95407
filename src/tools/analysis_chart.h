// The mixed-bit palettization chart drawn with cairo: PSNR (dB) against model-size reduction (%),
// one curve per fixed nbits, the mixed-bit curve through the recipes (labelled points), the linear
// 8-bit point and its iso-PSNR line. One drawing code for PNG and SVG (real text in both).
#pragma once
#include <string>

#include "compression/analysis_report.h"

namespace sdpal {

// Writes `path` (atomically); the format follows the extension: .png or .svg.
void draw_analysis_chart(const AnalysisReport& r, const std::string& path);

}  // namespace sdpal

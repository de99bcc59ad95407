#include "tools/analysis_chart.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/atomic_file.h"
#include "core/error.h"

namespace sdpal {

namespace {

constexpr double kWidth = 960, kHeight = 600;                        // drawing units
constexpr double kLeft = 78, kRight = 200, kTop = 48, kBottom = 62;  // margins around the plot
constexpr double kPngScale = 1.5;                                    // PNG pixels per unit

struct Rgb {
  double r, g, b;
};

Rgb nbits_colour(int nbits) {
  switch (nbits) {
    case 1:
      return {0.84, 0.15, 0.16};
    case 2:
      return {1.00, 0.50, 0.05};
    case 4:
      return {0.17, 0.63, 0.17};
    case 6:
      return {0.58, 0.40, 0.74};
    default:
      return {0.55, 0.34, 0.29};
  }
}
constexpr int kMaxTicks = 50;
constexpr Rgb kMixed{0.05, 0.05, 0.05}, kLinear{0.12, 0.47, 0.71}, kGrid{0.88, 0.88, 0.88};

// A 1-2-5 step giving about `target` intervals over `range`.
double nice_step(double range, int target) {
  const double raw = range / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string tick_label(double v, double step) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", step < 1 ? (step < 0.1 ? 2 : 1) : 0, v);
  return b;
}

class Chart {
 public:
  Chart(cairo_t* cr, const AnalysisReport& r) : cr_(cr), r_(r) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    auto see = [&](double y) {
      lo = std::min(lo, y);
      hi = std::max(hi, y);
    };
    for (const auto& c : r.curves)
      for (const auto& p : c.points) see(p.psnr);
    for (const auto& p : r.mixed_bit) see(p.psnr);
    if (r.linear_8bit) see(*r.linear_8bit);
    if (!std::isfinite(lo)) lo = 0, hi = 100;
    // Widened relative to the values too: at 1e300 dB, +-0.5 is below the spacing of doubles.
    if (hi - lo < 1) {
      const double pad = std::max(0.5, std::max(std::fabs(lo), std::fabs(hi)) * 1e-6);
      lo -= pad, hi += pad;
    }
    ystep_ = nice_step(hi - lo, 7);
    ylo_ = std::floor(lo / ystep_) * ystep_;
    yhi_ = std::ceil(hi / ystep_) * ystep_;
    // Values near the end of the double range (hi - lo overflowing, say) get a plain axis.
    if (!std::isfinite(ystep_) || !std::isfinite(ylo_) || !std::isfinite(yhi_) || !(ystep_ > 0) ||
        !(yhi_ > ylo_) || ylo_ + ystep_ == ylo_)
      ylo_ = 0, yhi_ = 100, ystep_ = 10;
  }

  void draw() {
    cairo_set_source_rgb(cr_, 1, 1, 1);
    cairo_paint(cr_);
    cairo_select_font_face(cr_, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    axes();
    if (r_.linear_8bit) {
      colour(kLinear);
      cairo_set_line_width(cr_, 1.2);
      const double dash[] = {6, 4};
      cairo_set_dash(cr_, dash, 2, 0);
      cairo_move_to(cr_, x(0), y(*r_.linear_8bit));
      cairo_line_to(cr_, x(100), y(*r_.linear_8bit));
      cairo_stroke(cr_);
      cairo_set_dash(cr_, nullptr, 0, 0);
    }
    cairo_save(cr_);
    cairo_rectangle(cr_, kLeft, kTop, plot_w(), plot_h());
    cairo_clip(cr_);
    for (const auto& c : r_.curves) polyline(c.points, nbits_colour(c.nbits), 2.0);
    polyline(r_.mixed_bit, kMixed, 2.4);
    cairo_restore(cr_);
    for (const auto& p : r_.mixed_bit) {
      colour(kMixed);
      cairo_arc(cr_, x(p.reduction_pct), y(p.psnr), 4, 0, 2 * M_PI);
      cairo_fill(cr_);
    }
    recipe_labels();
    if (r_.linear_8bit) {
      colour(kLinear);
      cairo_set_line_width(cr_, 2.4);
      const double cx = x(50), cy = y(*r_.linear_8bit), d = 6;
      cairo_move_to(cr_, cx - d, cy - d);
      cairo_line_to(cr_, cx + d, cy + d);
      cairo_move_to(cr_, cx - d, cy + d);
      cairo_line_to(cr_, cx + d, cy - d);
      cairo_stroke(cr_);
    }
    legend();
  }

 private:
  double plot_w() const { return kWidth - kLeft - kRight; }
  double plot_h() const { return kHeight - kTop - kBottom; }
  double x(double pct) const { return kLeft + pct / 100.0 * plot_w(); }
  double y(double db) const { return kTop + (yhi_ - db) / (yhi_ - ylo_) * plot_h(); }
  void colour(const Rgb& c) { cairo_set_source_rgb(cr_, c.r, c.g, c.b); }

  // Draws `s` with its reference point at (px, py); align 0 left, 0.5 centre, 1 right.
  void text(const std::string& s, double px, double py, double align) {
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    cairo_move_to(cr_, px - align * e.x_advance, py);
    cairo_show_text(cr_, s.c_str());
  }

  struct Box {
    double x0, y0, x1, y1;
    bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
  };

  // Labels the recipe points, each at the first of a ring of spots around its point that
  // collides with no other label or point; labels pushed away get a leader line.
  void recipe_labels() {
    cairo_set_font_size(cr_, 11);
    std::vector<Box> taken;
    for (const auto& p : r_.mixed_bit)
      taken.push_back(
          {x(p.reduction_pct) - 5, y(p.psnr) - 5, x(p.reduction_pct) + 5, y(p.psnr) + 5});
    for (size_t i = 0; i < r_.mixed_bit.size(); ++i) {
      const std::string& s = r_.mixed_labels[i];
      cairo_text_extents_t e;
      cairo_text_extents(cr_, s.c_str(), &e);
      const double px = x(r_.mixed_bit[i].reduction_pct), py = y(r_.mixed_bit[i].psnr);
      Box best{};
      bool placed = false;
      double dx = 0, dy = 0;
      for (int ring = 0; ring < 8 && !placed; ++ring)
        for (int side = 0; side < 4 && !placed; ++side) {
          dx = (side % 2 ? -1 : 1) * (7 + ring * 6);
          dy = (side < 2 ? -7 - ring * 13 : 15 + ring * 13);
          const double bx = dx > 0 ? px + dx : px + dx - e.x_advance, by = py + dy;
          best = {bx, by - 10, bx + e.x_advance, by + 2};
          placed = best.x0 >= kLeft && best.x1 <= kLeft + plot_w() && best.y0 >= kTop &&
                   best.y1 <= kTop + plot_h();
          for (const auto& t : taken) placed = placed && !best.overlaps(t);
        }
      taken.push_back(best);
      if (std::abs(dy) > 20) {
        cairo_set_source_rgb(cr_, 0.55, 0.55, 0.55);
        cairo_set_line_width(cr_, 0.7);
        cairo_move_to(cr_, px, py);
        cairo_line_to(cr_, dx > 0 ? best.x0 : best.x1, dy < 0 ? best.y1 : best.y0);
        cairo_stroke(cr_);
      }
      colour(kMixed);
      text(s, best.x0, best.y1 - 2, 0);
    }
  }

  void polyline(const std::vector<ChartPoint>& pts, const Rgb& c, double width) {
    if (pts.empty()) return;
    colour(c);
    cairo_set_line_width(cr_, width);
    cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
    cairo_move_to(cr_, x(pts[0].reduction_pct), y(pts[0].psnr));
    for (size_t i = 1; i < pts.size(); ++i)
      cairo_line_to(cr_, x(pts[i].reduction_pct), y(pts[i].psnr));
    cairo_stroke(cr_);
  }

  void axes() {
    cairo_set_line_width(cr_, 1);
    cairo_set_font_size(cr_, 12);
    for (int i = 0; i <= 10; ++i) {
      const double px = x(i * 10.0);
      colour(kGrid);
      cairo_move_to(cr_, px, kTop);
      cairo_line_to(cr_, px, kTop + plot_h());
      cairo_stroke(cr_);
      cairo_set_source_rgb(cr_, 0.2, 0.2, 0.2);
      text(std::to_string(i * 10), px, kTop + plot_h() + 18, 0.5);
    }
    // Ticks by index, at most kMaxTicks: a step below the spacing of doubles must not loop.
    const double ticks = std::min(std::round((yhi_ - ylo_) / ystep_), double(kMaxTicks));
    for (int k = 0; k <= static_cast<int>(ticks); ++k) {
      const double v = ylo_ + k * ystep_;
      colour(kGrid);
      cairo_move_to(cr_, kLeft, y(v));
      cairo_line_to(cr_, kLeft + plot_w(), y(v));
      cairo_stroke(cr_);
      cairo_set_source_rgb(cr_, 0.2, 0.2, 0.2);
      text(tick_label(v, ystep_), kLeft - 8, y(v) + 4, 1);
    }
    cairo_set_source_rgb(cr_, 0, 0, 0);
    cairo_rectangle(cr_, kLeft, kTop, plot_w(), plot_h());
    cairo_stroke(cr_);
    cairo_set_font_size(cr_, 14);
    text("Model size reduction (%)", kLeft + plot_w() / 2, kHeight - 18, 0.5);
    cairo_save(cr_);
    cairo_translate(cr_, 22, kTop + plot_h() / 2);
    cairo_rotate(cr_, -M_PI / 2);
    text("Signal integrity (PSNR in dB)", 0, 0, 0.5);
    cairo_restore(cr_);
    cairo_set_font_size(cr_, 16);
    text(r_.title, kLeft + plot_w() / 2, 30, 0.5);
  }

  void legend() {
    double ly = kTop + 14;
    const double lx = kLeft + plot_w() + 20;
    cairo_set_font_size(cr_, 12);
    auto line_entry = [&](const Rgb& c, const std::string& label) {
      colour(c);
      cairo_set_line_width(cr_, 2.4);
      cairo_move_to(cr_, lx, ly - 4);
      cairo_line_to(cr_, lx + 28, ly - 4);
      cairo_stroke(cr_);
      cairo_set_source_rgb(cr_, 0, 0, 0);
      text(label, lx + 36, ly, 0);
      ly += 22;
    };
    for (const auto& c : r_.curves)
      line_entry(nbits_colour(c.nbits), std::to_string(c.nbits) + "-bit");
    if (!r_.mixed_bit.empty()) line_entry(kMixed, "mixed-bit (recipes)");
    if (r_.linear_8bit) {
      colour(kLinear);
      cairo_set_line_width(cr_, 2.4);
      const double cx = lx + 14, cy = ly - 4, d = 5;
      cairo_move_to(cr_, cx - d, cy - d);
      cairo_line_to(cr_, cx + d, cy + d);
      cairo_move_to(cr_, cx - d, cy + d);
      cairo_line_to(cr_, cx + d, cy - d);
      cairo_stroke(cr_);
      cairo_set_source_rgb(cr_, 0, 0, 0);
      text("8-bit (linear quant)", lx + 36, ly, 0);
    }
  }

  cairo_t* cr_;
  const AnalysisReport& r_;
  double ylo_ = 0, yhi_ = 1, ystep_ = 1;
};

cairo_status_t write_to_file(void* closure, const unsigned char* data, unsigned int length) {
  return std::fwrite(data, 1, length, static_cast<std::FILE*>(closure)) == length
             ? CAIRO_STATUS_SUCCESS
             : CAIRO_STATUS_WRITE_ERROR;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) { return std::tolower(a) == b; });
}

}  // namespace

void draw_analysis_chart(const AnalysisReport& r, const std::string& path) {
  const bool svg = ends_with(path, ".svg");
  if (!svg && !ends_with(path, ".png"))
    fail("report: --output " + path + " must end in .png or .svg");
  write_file_atomic(path, [&](std::FILE* f) {
    cairo_surface_t* s =
        svg ? cairo_svg_surface_create_for_stream(write_to_file, f, kWidth, kHeight)
            : cairo_image_surface_create(CAIRO_FORMAT_RGB24, static_cast<int>(kWidth * kPngScale),
                                         static_cast<int>(kHeight * kPngScale));
    cairo_t* cr = cairo_create(s);
    if (!svg) cairo_scale(cr, kPngScale, kPngScale);
    Chart(cr, r).draw();
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS && !svg)
      st = cairo_surface_write_to_png_stream(s, write_to_file, f);
    cairo_surface_finish(s);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS)
      fail("report: cannot draw " + path + ": " + cairo_status_to_string(st));
  });
}

}  // namespace sdpal

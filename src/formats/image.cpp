#include "formats/image.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace sdpal {

Tensor image_to_tensor(const Image& image) {
  const int64_t h = image.height, w = image.width, plane = h * w;
  SDPAL_CHECK(h > 0 && w > 0 && image.rgb.size() == static_cast<size_t>(plane * 3),
              "image_to_tensor: image is " + std::to_string(w) + "x" + std::to_string(h) +
                  " but holds " + std::to_string(image.rgb.size()) + " bytes");
  Tensor t({1, 3, h, w});
  float* out = t.data();
  for (int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      const float unit = static_cast<float>(image.rgb[i * 3 + c]) / 255.0f;
      out[c * plane + i] = 2.0f * unit - 1.0f;  // 2*unit is exact, so this is one rounding
    }
  }
  return t;
}

std::vector<uint8_t> tensor_to_rgb8(const Tensor& img01, int index) {
  SDPAL_CHECK(img01.ndim() == 4 && img01.dim(1) == 3,
              "tensor_to_rgb8: expected [B, 3, H, W], got " + shape_str(img01.shape()));
  SDPAL_CHECK(index >= 0 && index < img01.dim(0), "tensor_to_rgb8: index " + std::to_string(index) +
                                                      " out of range for batch " +
                                                      std::to_string(img01.dim(0)));
  const int64_t plane = img01.dim(2) * img01.dim(3);
  const float* src = img01.data() + index * 3 * plane;
  std::vector<uint8_t> rgb(static_cast<size_t>(plane * 3));
  for (int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      const float x = src[c * plane + i];
      const float clamped = std::isnan(x) ? 0.0f : std::clamp(x, 0.0f, 1.0f);
      const float scaled = clamped * 255.0f;
      rgb[i * 3 + c] = static_cast<uint8_t>(std::nearbyint(scaled));  // half to even, as numpy
    }
  }
  return rgb;
}

Image tensor_to_image(const Tensor& img01, int index) {
  Image image;
  image.rgb = tensor_to_rgb8(img01, index);
  image.height = static_cast<int>(img01.dim(2));
  image.width = static_cast<int>(img01.dim(3));
  return image;
}

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's fixed-point weight precision for 8-bit

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

// Source span and fixed-point weights for every output position along one axis.
struct AxisFilter {
  std::vector<int> first, count;
  std::vector<std::vector<int32_t>> weights;
};

AxisFilter lanczos_axis(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 3.0 * filter_scale;
  const double inv_filter_scale = 1.0 / filter_scale;  // PIL multiplies by the reciprocal
  AxisFilter f;
  f.first.resize(out_size);
  f.count.resize(out_size);
  f.weights.resize(out_size);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    std::vector<double> w(std::max(hi - lo, 0));
    double total = 0.0;
    for (size_t k = 0; k < w.size(); ++k) {
      w[k] = lanczos3((static_cast<int>(k) + lo - center + 0.5) * inv_filter_scale);
      total += w[k];
    }
    f.first[o] = lo;
    f.count[o] = static_cast<int>(w.size());
    f.weights[o].resize(w.size());
    for (size_t k = 0; k < w.size(); ++k) {
      const double normalised = total != 0.0 ? w[k] / total : w[k];
      const double fixed = normalised * (1 << kPrecisionBits);
      f.weights[o][k] = static_cast<int32_t>(fixed < 0 ? fixed - 0.5 : fixed + 0.5);
    }
  }
  return f;
}

uint8_t clip8(int32_t acc) {
  return static_cast<uint8_t>(std::clamp(acc >> kPrecisionBits, 0, 255));
}

// Filters along x (stride 3 bytes) or y (stride a row) into a new width x height image.
std::vector<uint8_t> resample_pass(const std::vector<uint8_t>& src, int src_w, int out_w, int out_h,
                                   const AxisFilter& f, bool horizontal) {
  std::vector<uint8_t> dst(static_cast<size_t>(out_w) * out_h * 3);
  const size_t row = static_cast<size_t>(src_w) * 3;
  for (int y = 0; y < out_h; ++y) {
    for (int x = 0; x < out_w; ++x) {
      const int o = horizontal ? x : y;
      const int32_t* w = f.weights[o].data();
      for (int c = 0; c < 3; ++c) {
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int k = 0; k < f.count[o]; ++k) {
          const int s = f.first[o] + k;
          const size_t at = horizontal ? y * row + static_cast<size_t>(s) * 3 + c
                                       : s * row + static_cast<size_t>(x) * 3 + c;
          acc += src[at] * w[k];
        }
        dst[(static_cast<size_t>(y) * out_w + x) * 3 + c] = clip8(acc);
      }
    }
  }
  return dst;
}

}  // namespace

Image resize_lanczos(const Image& image, int width, int height) {
  SDPAL_CHECK(width > 0 && height > 0, "resize_lanczos: invalid target size " +
                                           std::to_string(width) + "x" + std::to_string(height));
  SDPAL_CHECK(image.width > 0 && image.height > 0 &&
                  image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
              "resize_lanczos: malformed source image");
  Image out = image;
  if (width != image.width) {
    out.rgb = resample_pass(out.rgb, out.width, width, out.height, lanczos_axis(image.width, width),
                            true);
    out.width = width;
  }
  if (height != image.height) {
    out.rgb = resample_pass(out.rgb, out.width, out.width, height,
                            lanczos_axis(image.height, height), false);
    out.height = height;
  }
  return out;
}

namespace {

// Copies the window [x0, x0 + w) x [y0, y0 + h) of `src`, coordinates clamped to the image, so a
// window larger than the image repeats its edge pixels.
Image window(const Image& src, int x0, int y0, int w, int h) {
  Image out;
  out.width = w;
  out.height = h;
  out.text = src.text;
  out.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    const int sy = std::clamp(y0 + y, 0, src.height - 1);
    for (int x = 0; x < w; ++x) {
      const int sx = std::clamp(x0 + x, 0, src.width - 1);
      for (int c = 0; c < 3; ++c)
        out.rgb[(static_cast<size_t>(y) * w + x) * 3 + c] =
            src.rgb[(static_cast<size_t>(sy) * src.width + sx) * 3 + c];
    }
  }
  return out;
}

}  // namespace

Image fit_image(const Image& image, int width, int height, ResizeMode mode, std::string* what) {
  SDPAL_CHECK(width > 0 && height > 0 && image.width > 0 && image.height > 0,
              "fit_image: invalid size");
  if (what) what->clear();
  if (image.width == width && image.height == height) return image;
  const std::string from = std::to_string(image.width) + "x" + std::to_string(image.height);
  const std::string to = std::to_string(width) + "x" + std::to_string(height);
  if (mode == ResizeMode::stretch) {
    if (what) *what = "resized " + from + " to " + to + " (aspect ratio not kept)";
    return resize_lanczos(image, width, height);
  }
  // Scale factor: cover (crop) or fit inside (fill), then the scaled size rounded.
  const double sx = double(width) / image.width, sy = double(height) / image.height;
  const double s = mode == ResizeMode::crop ? std::max(sx, sy) : std::min(sx, sy);
  const int w = std::max(1, static_cast<int>(std::lround(image.width * s)));
  const int h = std::max(1, static_cast<int>(std::lround(image.height * s)));
  const Image scaled = resize_lanczos(image, w, h);
  if (what)
    *what = "resized " + from + " to " + std::to_string(w) + "x" + std::to_string(h) +
            (mode == ResizeMode::crop ? ", cropped to " : ", filled with edge pixels to ") + to +
            " (aspect ratio kept)";
  return window(scaled, (w - width) / 2, (h - height) / 2, width, height);
}

}  // namespace sdpal

// An 8-bit RGB image in memory and its conversions to and from the pipeline's tensors,
// following diffusers' VaeImageProcessor (pre/post-processing) and PIL (resizing).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sdpal {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;                 // row-major, interleaved R,G,B; width*height*3 bytes
  std::map<std::string, std::string> text;  // PNG text chunks, keys and values in UTF-8
};

// [1, 3, H, W] in [-1, 1]: pixel / 127.5 - 1, bit-identical to diffusers'
// normalize(pil_to_numpy(img)) = 2 * (float32(pixel) / 255) - 1.
Tensor image_to_tensor(const Image& image);

// Sample `index` of a [B, 3, H, W] tensor in [0, 1] to interleaved RGB8, as diffusers'
// numpy_to_pil: (clamp(x, 0, 1) * 255).round() in float32, round half to even; NaN -> 0.
std::vector<uint8_t> tensor_to_rgb8(const Tensor& img01, int index);
// Same, wrapped in an Image (no text).
Image tensor_to_image(const Tensor& img01, int index);

// Resize with a Lanczos-3 filter computed like PIL's Image.resize(size, Image.LANCZOS)
// (diffusers' default resample for init images): separable, horizontal pass first, the
// filter support widened by the scale factor when shrinking, 8-bit fixed-point weights
// (22 fractional bits) and an 8-bit intermediate image. Text chunks are kept.
Image resize_lanczos(const Image& image, int width, int height);

// How an image of another size is fitted to width x height (A1111's img2img resize modes):
//   stretch: resize to the size, aspect ratio not kept ("Just resize");
//   crop:    scale to cover the size, keeping the aspect ratio, and cut the overhang evenly from
//            both sides ("Crop and resize");
//   fill:    scale to fit inside, keeping the aspect ratio, and fill the bands on both sides with
//            the edge pixels ("Resize and fill").
enum class ResizeMode { stretch, crop, fill };
// Returns the fitted image; `what` (if given) receives a short description of what was done
// (empty when the image already had the size).
Image fit_image(const Image& image, int width, int height, ResizeMode mode, std::string* what);

}  // namespace sdpal

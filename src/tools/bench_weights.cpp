#include "tools/bench_weights.h"

#include <cstring>
#include <filesystem>
#include <regex>

#include "compression/compress_model.h"
#include "compression/palettize.h"
#include "compression/quantize.h"
#include "core/dtype.h"
#include "core/error.h"
#include "pipeline/model_files.h"

namespace sdpal {

namespace fs = std::filesystem;

WeightSpec WeightSpec::parse(const std::string& s) {
  WeightSpec w;
  std::smatch m;
  // Bounded digit counts: std::stoi/stoll of a longer run would throw out_of_range.
  static const std::regex pal(R"(pal(\d{1,2})(?:g(\d{1,9}))?)");
  if (s == "as-is") {
    w.kind = Kind::AsIs;
  } else if (s == "fp32") {
    w.kind = Kind::F32;
  } else if (s == "fp16") {
    w.kind = Kind::F16;
  } else if (s == "linear8") {
    w.kind = Kind::Linear8;
  } else if (std::regex_match(s, m, pal) && valid_palette_bits(std::stoi(m[1].str()))) {
    w.kind = Kind::Palette;
    w.nbits = std::stoi(m[1].str());
    w.group_size = m[2].matched ? std::stoll(m[2].str()) : 0;
    SDPAL_CHECK(!m[2].matched || w.group_size > 0, "bench: group size must be positive in " + s);
  } else {
    fail("bench: unknown weights '" + s +
         "' (want as-is, fp32, fp16, linear8, palN or palNgG with N in 1,2,4,6,8, e.g. pal4g16)");
  }
  return w;
}

std::string WeightSpec::str() const {
  switch (kind) {
    case Kind::AsIs:
      return "as-is";
    case Kind::F32:
      return "fp32";
    case Kind::F16:
      return "fp16";
    case Kind::Linear8:
      return "linear8";
    case Kind::Palette:
      return "pal" + std::to_string(nbits) +
             (group_size ? "g" + std::to_string(group_size) : std::string());
  }
  return "?";
}

BenchUNetWeights::BenchUNetWeights(const std::string& model_dir, const WeightSpec& spec,
                                   int64_t min_elements)
    : spec_(spec) {
  files_ = std::make_unique<WeightStore>("unet");
  for (const auto& f :
       component_files(fs::path(model_dir) / "unet", "diffusion_pytorch_model", "", "UNet"))
    files_->add_file(f);
  if (spec.kind == WeightSpec::Kind::AsIs) {
    store_ = std::move(files_);
    for (const auto& n : store_->names()) params_ += shape_numel(store_->shape_of(n));
    bytes_ = store_->total_bytes();
    return;
  }
  SDPAL_CHECK(files_->compressed().empty(),
              "bench: " + model_dir + " is already compressed; use --weights as-is");
  store_ = std::make_unique<WeightStore>("unet");
  for (const auto& name : files_->names()) {
    const TensorView& v = *files_->find(name);
    params_ += v.numel();
    const bool candidate = is_compression_candidate(name, v.shape, v.dtype, min_elements, false);
    const bool compress = candidate && (spec.kind == WeightSpec::Kind::Linear8 ||
                                        spec.kind == WeightSpec::Kind::Palette);
    const DType want = spec.kind == WeightSpec::Kind::F16 ? DType::F16 : DType::F32;
    if (!compress && (v.dtype == want ||
                      (v.dtype != DType::F32 && v.dtype != DType::F16 && v.dtype != DType::BF16))) {
      store_->add_view(name, v);  // already in the wanted form (or not a float tensor)
      bytes_ += static_cast<int64_t>(v.nbytes);
      continue;
    }
    std::vector<float> w(v.numel());
    convert_to_f32(v.dtype, v.data, w.data(), w.size());
    // The file pages were read once for the conversion; counting them would charge every form
    // with the files' size.
    files_->release_pages(v);
    if (compress && spec.kind == WeightSpec::Kind::Palette) {
      SDPAL_CHECK(spec.group_size == 0 || v.shape[0] % spec.group_size == 0,
                  "bench: group size " + std::to_string(spec.group_size) + " does not divide the " +
                      std::to_string(v.shape[0]) + " output channels of " + name);
      palettes_.push_back(palettize(w.data(), v.shape, v.dtype, spec.nbits, spec.group_size));
      const PalettizedWeight& p = palettes_.back();
      store_->add_compressed(name, CompressedView::of(p));
      bytes_ += static_cast<int64_t>(p.indices.size() + 2 * p.lut.size());
    } else if (compress) {
      linear8_.push_back(quantize_linear8(w.data(), v.shape, v.dtype, true));
      const Linear8Weight& q = linear8_.back();
      store_->add_compressed(name, CompressedView::of(q));
      bytes_ += static_cast<int64_t>(q.q.size() + 4 * q.scale.size() + q.zero.size());
    } else {
      TensorView c = v;
      c.dtype = want;
      c.nbytes = w.size() * dtype_size(want);
      std::vector<uint8_t>& buf = converted_.emplace_back(c.nbytes);
      if (want == DType::F32)
        std::memcpy(buf.data(), w.data(), c.nbytes);
      else
        convert_f32_to_f16(w.data(), reinterpret_cast<uint16_t*>(buf.data()), w.size());
      c.data = buf.data();
      store_->add_view(name, c);
      bytes_ += static_cast<int64_t>(c.nbytes);
    }
  }
  // files_ stays mapped: small tensors are used from it in place; pages of converted tensors are
  // never touched again, so they do not count as resident.
}

std::string BenchUNetWeights::description() const {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s weights, %.0f MB (%.2f bits/param)", spec_.str().c_str(),
                bytes_ / 1e6, params_ ? 8.0 * bytes_ / params_ : 0.0);
  return buf;
}

}  // namespace sdpal

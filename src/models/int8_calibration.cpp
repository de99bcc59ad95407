#include "models/int8_calibration.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"
#include "kernels/int8_quant.h"
#include "models/unet.h"

namespace fs = std::filesystem;

namespace sdpal {

namespace {

using ojson = nlohmann::ordered_json;

float json_float(const ojson& j, const char* key, const std::string& where) {
  SDPAL_CHECK(j.contains(key) && j[key].is_number(), where + ": '" + key + "' must be a number");
  const double v = j[key].get<double>();
  SDPAL_CHECK(std::isfinite(v) && std::fabs(v) < 1e30,
              where + ": '" + key + "' = " + j[key].dump() + " is not a usable range end");
  return static_cast<float>(v);
}

}  // namespace

const LayerRange* Int8Calibration::find(const std::string& name) const {
  for (const auto& l : layers)
    if (l.name == name) return &l;
  return nullptr;
}

LayerRange* Int8Calibration::find(const std::string& name) {
  return const_cast<LayerRange*>(static_cast<const Int8Calibration*>(this)->find(name));
}

int64_t Int8Calibration::int8_count() const {
  return std::count_if(layers.begin(), layers.end(), [](const LayerRange& l) { return l.int8; });
}

ojson Int8Calibration::to_json() const {
  ojson j;
  j["format"] = kInt8CalibrationFormat;
  j["model"] = model;
  j["settings"] = settings;
  ojson ls = ojson::object();
  for (const auto& l : layers) {
    ojson e;
    e["min"] = l.min;
    e["max"] = l.max;
    e["int8"] = l.int8;
    e["gflops"] = std::round(l.gflops * 1e4) / 1e4;
    ls[l.name] = e;
  }
  j["layers"] = ls;
  return j;
}

Int8Calibration Int8Calibration::from_json(const ojson& j, const std::string& where) {
  SDPAL_CHECK(j.is_object(), where + ": not a JSON object (an sdpal int8 calibration file?)");
  SDPAL_CHECK(j.contains("format") && j["format"].is_string(),
              where + ": no 'format' (not an sdpal int8 calibration file?)");
  const std::string format = j["format"].get<std::string>();
  SDPAL_CHECK(format == kInt8CalibrationFormat,
              where + ": format '" + format + "', expected '" + kInt8CalibrationFormat + "'");
  Int8Calibration c;
  if (j.contains("model")) {
    SDPAL_CHECK(j["model"].is_string(), where + ": 'model' must be a string");
    c.model = j["model"].get<std::string>();
  }
  if (j.contains("settings")) {
    SDPAL_CHECK(j["settings"].is_object(), where + ": 'settings' must be an object");
    c.settings = j["settings"];
  }
  SDPAL_CHECK(j.contains("layers") && j["layers"].is_object() && !j["layers"].empty(),
              where + ": 'layers' must be a non-empty object {module path: range}");
  for (const auto& [name, e] : j["layers"].items()) {
    const std::string w = where + ": layer '" + name + "'";
    SDPAL_CHECK(e.is_object(), w + " must be an object with min, max, int8");
    LayerRange l;
    l.name = name;
    l.min = json_float(e, "min", w);
    l.max = json_float(e, "max", w);
    SDPAL_CHECK(l.min <= l.max,
                w + ": min " + std::to_string(l.min) + " > max " + std::to_string(l.max));
    SDPAL_CHECK(e.contains("int8") && e["int8"].is_boolean(), w + ": 'int8' must be true or false");
    l.int8 = e["int8"].get<bool>();
    if (e.contains("gflops")) {
      SDPAL_CHECK(e["gflops"].is_number() && e["gflops"].get<double>() >= 0,
                  w + ": 'gflops' must be a non-negative number");
      l.gflops = e["gflops"].get<double>();
    }
    c.layers.push_back(l);
  }
  return c;
}

Int8Calibration read_int8_calibration(const std::string& path) {
  const ojson j = read_json_document(path, "int8 calibration");
  return Int8Calibration::from_json(j, path);
}

void write_int8_calibration(const std::string& path, const Int8Calibration& c) {
  write_json_document(path, c.to_json());
}

std::string default_int8_calibration_path(const std::string& model_path) {
  const fs::path p(model_path);
  if (fs::is_directory(p)) return (p / "unet" / "sdpal_int8.json").string();
  return (p.parent_path() / (p.stem().string() + ".sdpal_int8.json")).string();
}

int64_t apply_int8_calibration(UNet& unet, const Int8Calibration& c, const std::string& where) {
  const std::vector<WeightLayer*> layers = unet.weight_layers();
  std::set<std::string> names;
  for (const WeightLayer* l : layers) {
    names.insert(l->name);
    SDPAL_CHECK(c.find(l->name), where + ": no range for UNet layer '" + l->name +
                                     "': the calibration is for another model; run `sdpal "
                                     "calibrate` for this one");
  }
  for (const auto& l : c.layers)
    SDPAL_CHECK(names.count(l.name), where + ": layer '" + l.name +
                                         "' is not in this UNet: the calibration is for another "
                                         "model; run `sdpal calibrate` for this one");
  int64_t n = 0;
  for (WeightLayer* l : layers) {
    const LayerRange* r = c.find(l->name);
    if (r->int8) {
      l->enable_int8(r->act());
      ++n;
    } else {
      l->disable_int8();
    }
  }
  return n;
}

void RangeObserver::observe(const WeightLayer& layer, const Tensor& x, double flops) {
  const auto [mn, mx] = k::min_max(x.data(), x.numel());
  Acc& a = acc_[layer.name];
  a.min = a.count ? std::min(a.min, mn) : mn;
  a.max = a.count ? std::max(a.max, mx) : mx;
  a.flops += flops;
  ++a.count;
}

std::vector<LayerRange> RangeObserver::ranges(const std::vector<std::string>& order,
                                              int64_t calls) const {
  std::vector<LayerRange> r;
  for (const auto& name : order) {
    auto it = acc_.find(name);
    SDPAL_CHECK(it != acc_.end(), "calibration: layer '" + name + "' was never called");
    LayerRange l;
    l.name = name;
    l.min = std::isfinite(it->second.min) ? it->second.min : 0.f;
    l.max = std::isfinite(it->second.max) ? it->second.max : 0.f;
    l.gflops = it->second.flops / 1e9 / std::max<int64_t>(calls, 1);
    r.push_back(l);
  }
  return r;
}

}  // namespace sdpal

// safetensors reading (mmap, fully validated header) and atomic writing.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// optional "__metadata__" {str: str}, then the data region.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sdpal {

class FileMapping;

// A tensor inside a mapped file: dtype, shape and a pointer into the mapping.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const { return shape_numel(shape); }
};

class SafetensorsFile {
 public:
  // Maps and validates the file; throws sdpal::Error naming the file and the problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Throws if absent.
  const TensorView& get(const std::string& name) const;
  const TensorView* find(const std::string& name) const;
  // Copies a tensor into fp32 (any float/int dtype).
  Tensor to_f32(const std::string& name) const;
  size_t file_size() const { return size_; }
  // Throws naming the file if it was truncated or changed in place since it was mapped (reads
  // past its new end see zeros instead of raising SIGBUS: core/file_mapping.h).
  void check_intact() const;
  // Drops the mapped pages wholly inside [p, p + n) from the process's resident set (they are
  // read from the file again if touched). False, doing nothing, if the range is not in this file.
  bool release_pages(const void* p, size_t n) const;

 private:
  std::string path_;
  std::unique_ptr<FileMapping> mapping_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write. `data` must hold numel * dtype_size bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;
};

// Writes a safetensors file atomically (temp file in the same folder, fsync, rename).
// Tensors are laid out in the given order, each aligned to 8 bytes.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Convenience: write fp32 tensors by name.
void write_safetensors_f32(const std::string& path,
                           const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                           const std::map<std::string, std::string>& metadata = {});

}  // namespace sdpal

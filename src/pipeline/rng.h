// Seeded Gaussian noise that reproduces PyTorch's CPU generator bit for bit, so that
// `--seed S` gives the same initial latents as diffusers with
//   generator = torch.Generator("cpu").manual_seed(S); torch.randn(shape, generator=generator)
//
// Algorithm (ATen CPUGeneratorImpl + normal_kernel, see docs/rng.md):
//  * Engine: MT19937 seeded with the low 32 bits of the seed (standard init_genrand).
//    random() = one 32-bit output; random64() = (first << 32) | second.
//  * randn of a float tensor with numel >= 16: fill every element with a 24-bit uniform
//    u = (random() & 0xFFFFFF) * 2^-24, then transform each block of 16 in place with
//    Box-Muller: for j < 8, r = sqrt(-2 log(1 - u[j])), theta = 2*pi*u[j+8],
//    out[j] = r cos(theta), out[j+8] = r sin(theta). If numel % 16 != 0 the LAST 16 elements
//    are refilled with 16 fresh uniforms and transformed again (overlapping the previous block).
//  * numel < 16: element by element, double-precision Box-Muller on 53-bit uniforms
//    (random64() & (2^53-1)) * 2^-53 with a cached second value (the sine) that the next
//    small draw returns first; the result is rounded to float.
//  * The log/sin/cos in the block path depend on the kernel torch dispatches to:
//    x86 CPUs with AVX2 (and AVX-512, which used the same code in torch 1.13) use float
//    Cephes polynomial approximations (avx_mathfun) compiled with FMA contraction;
//    other CPUs (ARM, ATEN_CPU_CAPABILITY=default) use libm logf/cosf/sinf.
//    The two differ in the last bit of ~1% of values; choose with TorchRandnKernel.
#pragma once
#include <cstdint>
#include <optional>
#include <random>

#include "core/tensor.h"

namespace sdpal {

enum class TorchRandnKernel {
  kX86Avx2,  // torch on x86-64 (AVX2 / AVX-512 builds): the common diffusers CPU setup
  kPortable  // torch's default kernel (ARM/Apple silicon, or ATEN_CPU_CAPABILITY=default)
};

class TorchCpuRng {
 public:
  explicit TorchCpuRng(uint64_t seed, TorchRandnKernel kernel = TorchRandnKernel::kX86Avx2);

  // Same values as torch.randn(shape, generator=g) for a float32 CPU tensor.
  Tensor randn(const Shape& shape);
  // In-place variant over a contiguous buffer of n floats (same stream as randn).
  void fill_randn(float* data, int64_t n);

  // Raw generator outputs (torch's generator->random() / random64()).
  uint32_t next_u32() { return engine_(); }
  uint64_t next_u64();

  uint64_t seed() const { return seed_; }

 private:
  float next_uniform_float();    // [0, 1), 24 random bits
  double next_uniform_double();  // [0, 1), 53 random bits
  double next_normal_double();   // Box-Muller with the cached second sample
  void box_muller_block16(float* block) const;

  uint64_t seed_;
  TorchRandnKernel kernel_;
  std::mt19937 engine_;
  std::optional<double> cached_normal_;
};

}  // namespace sdpal

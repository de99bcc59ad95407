// Analytic compute cost of one UNet forward / VAE decode, walked over the same config the models
// are built from. Counts multiply-accumulates of the matrix work only:
//   conv      Ho*Wo*Cout*Cin*k*k per image
//   linear    M*N*K
//   attention 2*B*heads*Tq*Tk*D (Q*K^T and P*V)
// Norms, softmax, activations and residual adds are not counted (well under 1% of the total).
// FLOPs = 2 * MACs (one FMA = 2 floating-point operations, the unit of a CPU's peak).
#pragma once
#include <cstdint>

#include "models/unet.h"
#include "models/vae.h"

namespace sdpal {

struct ComputeCost {
  double conv_macs = 0, linear_macs = 0, attention_macs = 0;
  double macs() const { return conv_macs + linear_macs + attention_macs; }
  double flops() const { return 2 * macs(); }
};

// One UNet forward on a [batch, in_channels, latent_h, latent_w] sample with a context of
// `context_len` tokens (77 for CLIP). Odd latent sizes follow the model (ceil on downsampling).
ComputeCost unet_cost(const UNetConfig& cfg, int64_t batch, int64_t latent_h, int64_t latent_w,
                      int64_t context_len = 77);

// One VAE decode of [batch, latent, latent_h, latent_w] latents (image 8x larger for SD VAEs).
ComputeCost vae_decoder_cost(const VaeConfig& cfg, int64_t batch, int64_t latent_h,
                             int64_t latent_w);

}  // namespace sdpal

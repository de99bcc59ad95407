// Token Merging for Stable Diffusion (ToMe; Bolya & Hoffman 2023) with the semantics of the tomesd
// package's defaults (sx = sy = 2, merge_attn only): in transformer blocks at (near) full latent
// resolution, self-attention runs on fewer tokens,
//   x = x + unmerge(attn1(merge(norm1(x)))),
// while cross-attention and the feed-forward see every token.
//
// Matching (tomesd's bipartite_soft_matching_random2d): the h x w token grid is cut into 2x2 cells;
// one token per cell is a destination (dst), every other token is a source (src), including the
// last row / column when h or w is odd. Each source's best destination is the one with the highest
// cosine similarity of the block's input x (before norm1); the r sources with the highest best
// scores are merged: each destination becomes the mean of itself and the sources merged into it.
// Unmerging gives every merged source its destination's output.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace sdpal {

struct ToMeOptions {
  double ratio = 0;        // fraction of a block's tokens merged away, 0..0.9 (0: off)
  int max_downsample = 1;  // merge in blocks at most this far below full resolution: 1, 2, 4, 8
  bool random = false;     // destination at a random place in each cell (else its top-left)
  uint64_t seed = 0;       // seed of the random stream (restarted by ToMe::set)
  bool operator==(const ToMeOptions&) const = default;
};

// Throws sdpal::Error naming the option that is out of range.
void check_tome_options(const ToMeOptions& o);

// One block call's matching: which tokens merge where, shared by merge() and unmerge().
class TokenMerge {
 public:
  // metric [B, h*w, C] (tokens in row-major grid order). dst_in_cell: for each of the (h/2)*(w/2)
  // cells (row-major) the place of its destination, dy*2 + dx in 0..3; shared by the whole batch
  // so that the cond and uncond halves of a guidance batch get the same destinations. r: tokens to
  // merge away per batch element, clamped to the number of sources.
  static TokenMerge match(const Tensor& metric, int64_t h, int64_t w, int64_t r,
                          const std::vector<uint8_t>& dst_in_cell);

  int64_t tokens() const { return N_; }
  int64_t r() const { return r_; }
  // Destination token positions, ascending (the same for every batch element).
  const std::vector<int32_t>& destinations() const { return dst_; }

  // [B, N, C] -> [B, N - r, C]: the unmerged sources (highest-scoring first), then the
  // destinations, each the mean of itself and its merged sources.
  Tensor merge(const Tensor& x) const;
  // [B, N - r, C] -> [B, N, C]: the inverse gather; merged sources copy their destination.
  Tensor unmerge(const Tensor& y) const;
  // x += unmerge(y), without the intermediate tensor.
  void unmerge_add(const Tensor& y, Tensor& x) const;

 private:
  int64_t B_ = 0, N_ = 0, r_ = 0;
  std::vector<int32_t> dst_;  // [D]
  std::vector<int32_t> unm_;  // [B, S - r] positions of the unmerged sources, in output order
  // Merged sources grouped by destination, in score order: for batch b and destination j,
  // positions merged_[off_[b*(D+1)+j] .. off_[b*(D+1)+j+1]).
  std::vector<int32_t> off_, merged_;
};

// A ToMe setting and the random stream its destination choices come from: one per generation,
// handed to each UNet::forward of it.
class ToMe {
 public:
  ToMe() = default;
  explicit ToMe(const ToMeOptions& o) { set(o); }
  void set(const ToMeOptions& o);  // checks o, restarts the random stream at o.seed
  const ToMeOptions& options() const { return o_; }
  bool on() const { return o_.ratio > 0; }
  // The matching for a transformer block whose input x is [B, h*w, C], in a UNet called on a
  // latent of full_tokens positions; nullopt where tomesd leaves the block alone: ToMe off, the
  // block more than max_downsample below full resolution (tomesd's downsample =
  // ceil(sqrt(full_tokens / tokens))), r = int(ratio * tokens) = 0, or no whole 2x2 cell. Random
  // destinations are used only for an even batch, as tomesd does (an odd batch cannot hold both
  // halves of a guidance pair). Advances the random stream: not for concurrent use.
  std::optional<TokenMerge> plan(const Tensor& x, int64_t h, int64_t w, int64_t full_tokens) const;

 private:
  ToMeOptions o_;
  mutable std::mt19937_64 rng_;
};

// What the transformer blocks of one UNet forward need to apply ToMe.
struct ToMeCall {
  const ToMe* tome = nullptr;
  int64_t full_tokens = 0;  // latent positions of the UNet input
  std::optional<TokenMerge> plan(const Tensor& x, int64_t h, int64_t w) const {
    return tome->plan(x, h, w, full_tokens);
  }
};

}  // namespace sdpal

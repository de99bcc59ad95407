// The pipeline settings of a golden "pipeline" case (tiny-sd1/sd2/sdxl, demo-fashion, tiny-lora):
// prompts, size, steps, guidance, the scheduler class as an sdpal sampler, and the given noise.
#pragma once
#include <string>

#include "pipeline/generate.h"
#include "support/fixtures.h"

namespace sdpal::test {

// The sdpal sampler of the case's diffusers scheduler class; sets *karras from its overrides.
std::string sampler_of(const Case& c, bool* karras);

// GenerateParams for the case: a null negative_prompt gives none (SDXL's zeros), and
// timestep_spacing is the one the case ran with (the generator's base config lacked it, so the
// class default applied; the model folder's config, written afterwards, pins "leading").
GenerateParams golden_generate_params(const Case& c);

}  // namespace sdpal::test

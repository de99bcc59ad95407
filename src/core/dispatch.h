// Run-time dispatch of Highway kernels, held to the kernel level (core/cpu.h).
//
// A file of portable kernels follows Highway's pattern: HWY_TARGET_INCLUDE names the file itself,
// <hwy/foreach_target.h> compiles it once per enabled target, the kernels live in
// `namespace sdpal::HWY_NAMESPACE` (between HWY_BEFORE_NAMESPACE / HWY_AFTER_NAMESPACE), and the
// `#if HWY_ONCE` part exports them (HWY_EXPORT) and calls them through SDPAL_DISPATCH, which
// first makes sure SDPAL_ISA's limit is applied to Highway's choice.
#pragma once
#include <hwy/highway.h>

#include "core/cpu.h"

#define SDPAL_DISPATCH(FUNC) (::sdpal::cpu::level(), HWY_DYNAMIC_DISPATCH(FUNC))

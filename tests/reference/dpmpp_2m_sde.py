"""Golden reference for sdpal's DPM++ 2M SDE sampler: diffusers' own DPMSolverMultistepScheduler
(algorithm_type "sde-dpmsolver++", solver_order 2) stepped over given model outputs and given
variance noise, saved as tests/data/dpmpp_2m_sde.safetensors (written without the safetensors
package: header + raw float32 data).

Run with Debian's python3-torch and a diffusers source tree (v0.24.0, the version the fixtures and sdpal follow):
  /usr/bin/python3 tests/reference/dpmpp_2m_sde.py --diffusers-src /path/diffusers/src
"""
import argparse
import json
import os
import struct
import sys


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().to("cpu").float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diffusers-src", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "dpmpp_2m_sde.safetensors"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    import pytorch_unet  # for its stand-ins of huggingface_hub/safetensors (nothing downloaded)

    if pytorch_unet._install_stubs(["huggingface_hub", "safetensors"]):
        import huggingface_hub.constants as hub_constants  # a stand-in: diffusers 0.24 reads this

        hub_constants.hf_cache_home = os.path.expanduser("~/.cache/huggingface")
    sys.path.insert(0, os.path.abspath(args.diffusers_src))
    import torch
    import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

    config = {  # SD 1.x's scheduler settings
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
        "algorithm_type": "sde-dpmsolver++", "solver_order": 2, "timestep_spacing": "linspace",
    }
    out = {}
    for karras in (False, True):
        s = DPMSolverMultistepScheduler(**config, use_karras_sigmas=karras)
        steps = 8
        s.set_timesteps(steps)
        g = torch.Generator("cpu").manual_seed(1234 + karras)
        shape = (1, 4, 3, 5)
        x = torch.randn(shape, generator=g) * s.init_noise_sigma
        outs = torch.randn((steps,) + shape, generator=g)
        noise = torch.randn((steps,) + shape, generator=g)
        tag = "karras" if karras else "plain"
        out[f"{tag}.init"] = x.clone()
        lat = []
        for i, t in enumerate(s.timesteps):
            # diffusers 0.24 draws the step's noise with randn_tensor: hand it the given one.
            dpm.randn_tensor = lambda *a, _z=noise[i], **k: _z.clone()
            x = s.step(outs[i], t, x).prev_sample
            lat.append(x.clone())
        out[f"{tag}.model_outputs"] = outs
        out[f"{tag}.variance_noise"] = noise
        out[f"{tag}.timesteps"] = s.timesteps.float()
        out[f"{tag}.latents_per_step"] = torch.stack(lat)
    write_safetensors(args.out, out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()

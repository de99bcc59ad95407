#!/usr/bin/python3
"""PyTorch fp32 baseline: time one diffusers UNet2DConditionModel step on the CPU.

Mirrors `sdpal bench`: for each size, --warmup untimed and --steps timed UNet forwards on random
latents [batch, 4, H/8, W/8] with a random 77-token context, timestep 500. Prints JSON with the
median/min seconds per step, GFLOP per step, GFLOP/s and the peak RSS.

GFLOP per step is counted during the first warm-up forward with hooks, the same way as sdpal's
src/models/flops.h: Conv2d (Ho*Wo*Cout*Cin/groups*k*k MAC), Linear (M*N*K MAC) and attention
(Q*K^T + P*V = 2*B*Tq*Tk*inner MAC); 1 MAC = 2 FLOP. SD 1.5, 512x512, batch 2 gives 1606.5.

diffusers is not installed system-wide: --diffusers-src points at a diffusers checkout's src/.
diffusers imports huggingface_hub and safetensors at module level, which Debian does not package;
when they are missing we register inert stand-ins (no hub access is needed: the model is built
from its local config). Weights are read from the local safetensors file by a small reader of our
own, one tensor at a time into the fp32 parameters, so loading does not inflate the peak RSS.

See docs/bench.md for the setup (Debian python3-torch + libopenblas0-pthread).
"""

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import resource
import statistics
import struct
import sys
import time
import types


def _install_stubs(packages):
    """Make `import PKG[.x]` work for each missing package: diffusers only needs the names to
    exist at import time when the model is built from local files. Returns the stubbed ones."""
    missing = []
    for pkg in packages:
        try:
            __import__(pkg)
        except ImportError:
            missing.append(pkg)
    if not missing:
        return missing

    constants = {
        "HF_HOME": os.path.expanduser("~/.cache/huggingface"),
        "HF_HUB_CACHE": os.path.expanduser("~/.cache/huggingface/hub"),
        "HF_HUB_OFFLINE": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "REGEX_COMMIT_HASH": r"^[0-9a-f]{40}$",
    }

    def unavailable(name):
        def f(*_args, **_kwargs):
            raise RuntimeError(f"{name} called, but its package is not installed (stub)")

        return f

    class StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if name == "validate_hf_hub_args":
                value = lambda fn: fn  # noqa: E731
            elif name == "is_jinja_available":
                value = lambda: False  # noqa: E731
            elif name in constants:
                value = constants[name]
            elif name.isupper():
                value = ""
            elif name.endswith(("Error", "Exception", "Warning")):
                value = type(name, (Exception,), {})
            elif name[:1].isupper():
                value = type(name, (), {"__init__": lambda self, *a, **k: None})
            else:
                value = unavailable(name)
            setattr(self, name, value)
            return value

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in missing:
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            m = StubModule(spec.name)
            m.__path__ = []
            m.__version__ = "0.20.3"
            return m

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())
    return missing


_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def _load_safetensors_into(model, path, torch):
    """Copy tensors from a .safetensors file into the model's fp32 parameters in place."""
    params = model.state_dict()
    seen = set()
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if name not in params:
                raise SystemExit(f"{path}: tensor {name} is not a parameter of the UNet")
            begin, end = info["data_offsets"]
            f.seek(base + begin)
            buf = bytearray(end - begin)
            f.readinto(buf)
            if info["dtype"] not in _SAFETENSORS_DTYPES:
                raise SystemExit(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
            t = torch.frombuffer(buf, dtype=getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]]))
            params[name].copy_(t.reshape(info["shape"]))
            seen.add(name)
    missing = sorted(set(params) - seen)
    if missing:
        raise SystemExit(f"{path}: {len(missing)} UNet parameters missing, e.g. {missing[:3]}")


class FlopCounter:
    """Counts MACs of one forward with module hooks (conv, linear, attention)."""

    def __init__(self, model, torch, attention_cls):
        self.macs = {"conv": 0, "linear": 0, "attention": 0}
        self.handles = []
        nn = torch.nn
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                self.handles.append(m.register_forward_hook(self._conv))
            elif isinstance(m, nn.Linear):
                self.handles.append(m.register_forward_hook(self._linear))
            elif isinstance(m, attention_cls):
                self._hook_attention(m)

    def _conv(self, m, _inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        self.macs["conv"] += out.numel() * (m.in_channels // m.groups) * k

    def _linear(self, m, _inp, out):
        self.macs["linear"] += out.numel() * m.in_features

    def _hook_attention(self, attn):
        shapes = {}

        def q_hook(_m, _i, out):
            shapes["q"] = out.shape  # [B, Tq, inner]

        def k_hook(_m, _i, out):
            shapes["k"] = out.shape  # [B, Tk, inner]

        def attn_hook(_m, _i, _out):
            b, tq, inner = shapes["q"]
            tk = shapes["k"][1]
            self.macs["attention"] += 2 * b * tq * tk * inner

        self.handles += [
            attn.to_q.register_forward_hook(q_hook),
            attn.to_k.register_forward_hook(k_hook),
            attn.register_forward_hook(attn_hook),
        ]

    def remove(self):
        for h in self.handles:
            h.remove()

    def gflop(self):
        return 2 * sum(self.macs.values()) / 1e9


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024)


def parse_size(s):
    if "x" in s:
        w, h = s.split("x")
        return int(w), int(h)
    return int(s), int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusers-src", required=True, help="diffusers checkout's src/ folder")
    ap.add_argument("--model", required=True, help="diffusers model folder (uses MODEL/unet)")
    ap.add_argument("--sizes", default="512", help="comma-separated image sizes, N or WxH")
    ap.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one CFG step)")
    ap.add_argument("--steps", type=int, default=3, help="timed forwards per size")
    ap.add_argument("--warmup", type=int, default=1, help="untimed forwards per size first (>= 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--gflop", default="", help="comma-separated GFLOP per step for each size "
                    "(default: counted with hooks during the first warm-up)")
    ap.add_argument("--random-init", action="store_true", help="skip loading the weights")
    ap.add_argument("--json", default="", help="also write the JSON to this file")
    args = ap.parse_args()

    sys.path.insert(0, os.path.abspath(args.diffusers_src))
    stubbed = _install_stubs(["huggingface_hub", "safetensors"])

    import torch

    torch.set_num_threads(args.threads)
    import diffusers
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention

    unet_dir = os.path.join(args.model, "unet")
    t0 = time.perf_counter()
    config = UNet2DConditionModel.load_config(unet_dir)
    unet = UNet2DConditionModel.from_config(config).to(torch.float32).eval()
    weights = "random init"
    if not args.random_init:
        for fname in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
            path = os.path.join(unet_dir, fname)
            if os.path.exists(path):
                with torch.no_grad():
                    _load_safetensors_into(unet, path, torch)
                weights = path
                break
    load_s = time.perf_counter() - t0
    rss_after_load = peak_rss_gib()
    processors = sorted({type(p).__name__ for p in unet.attn_processors.values()})

    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    given = [float(g) for g in args.gflop.split(",") if g]
    if given and len(given) != len(sizes):
        raise SystemExit("--gflop needs one value per --sizes entry")
    gen = torch.Generator().manual_seed(0)
    results = []
    with torch.inference_mode():
        ctx = torch.randn(args.batch, 77, config["cross_attention_dim"], generator=gen)
        t = torch.full((args.batch,), 500, dtype=torch.long)
        for i, (w, h) in enumerate(sizes):
            x = torch.randn(args.batch, config["in_channels"], h // 8, w // 8, generator=gen)
            counter = None if given else FlopCounter(unet, torch, Attention)
            for _ in range(max(args.warmup, 1)):
                out = unet(x, t, encoder_hidden_states=ctx).sample
                if counter:
                    gflop = counter.gflop()
                    counter.remove()
                    counter = None
            if given:
                gflop = given[i]
            times = []
            for _ in range(args.steps):
                s = time.perf_counter()
                out = unet(x, t, encoder_hidden_states=ctx).sample
                times.append(time.perf_counter() - s)
            med = statistics.median(times)
            r = {
                "size": f"{w}x{h}",
                "latent": f"{w // 8}x{h // 8}",
                "gflop_per_step": round(gflop, 1),
                "median_s": round(med, 3),
                "min_s": round(min(times), 3),
                "gflops": round(gflop / med, 1),
                "step_s": [round(s, 3) for s in times],
                "peak_rss_gib_so_far": round(peak_rss_gib(), 2),
                "output_finite": bool(torch.isfinite(out).all()),
            }
            results.append(r)
            print(f"{r['size']}: median {med:.3f} s/step, min {min(times):.3f}, "
                  f"{r['gflops']} GFLOP/s, peak RSS {r['peak_rss_gib_so_far']} GiB", file=sys.stderr)

    report = {
        "runtime": "pytorch",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "stubbed_packages": stubbed,
        "attention_processors": processors,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "weights": weights,
        "load_s": round(load_s, 2),
        "rss_after_load_gib": round(rss_after_load, 2),
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "loadavg_after": os.getloadavg(),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

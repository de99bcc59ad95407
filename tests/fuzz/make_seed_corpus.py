#!/usr/bin/env python3
"""Writes the committed seed corpora under tests/fuzz/corpus/<harness>/ (small, hand-made or
taken from the fixtures' headers and configs; see docs/fuzzing.md). Run from the repository root;
optional arguments: single-file checkpoints (sd1, sd2) whose headers seed fuzz_checkpoint."""
import json, os, struct, sys, zlib

OUT = "tests/fuzz/corpus"


def put(harness, name, data):
    os.makedirs(f"{OUT}/{harness}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(f"{OUT}/{harness}/{name}", "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, align=8):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, off, blobs = {}, 0, b""
    for name, dt, shape, data in tensors:
        pad = (-off) % align
        blobs += b"\0" * pad
        off += pad
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs += data
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + blobs


def f16(values):
    return struct.pack(f"<{len(values)}e", *values)


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


# ---- fuzz_safetensors
put("fuzz_safetensors", "two_tensors", safetensors(
    [("a", "F32", [2, 2], f32([1, 2, 3, 4])), ("b.weight", "F16", [3], f16([0.5, -1, 2]))],
    {"format": "pt"}))
put("fuzz_safetensors", "dtypes", safetensors(
    [("bf", "BF16", [2], b"\x80\x3f\x00\x40"), ("d", "F64", [1], struct.pack("<d", 3.25)),
     ("i8", "I8", [3], b"\x01\xff\x7f"), ("u8", "U8", [2], b"\x00\xff"),
     ("i16", "I16", [1], b"\x01\x80"), ("i32", "I32", [1], b"\x01\0\0\x80"),
     ("i64", "I64", [1], b"\x07" + b"\0" * 7), ("bool", "BOOL", [2], b"\x00\x01")]))
put("fuzz_safetensors", "empty_and_scalar", safetensors(
    [("scalar", "F32", [], f32([7])), ("empty", "F16", [0, 5], b"")]))
put("fuzz_safetensors", "header_only", safetensors([], {"k": "v"}))

# ---- fuzz_compressed_format: a 2-bit per-tensor palette, a grouped 1-bit one, linear8 both ways
pal = {"kind": "palette", "shape": [4, 4], "dtype": "F16", "nbits": 2, "granularity": "per-tensor",
       "group_size": 0, "entries": 4, "bit_order": "lsb-first"}
grp = {"kind": "palette", "shape": [4, 2], "dtype": "F32", "nbits": 1,
       "granularity": "per-grouped-channel", "group_size": 2, "entries": 2,
       "bit_order": "lsb-first"}
lin = {"kind": "linear8", "shape": [2, 3], "dtype": "F16", "nbits": 8,
       "granularity": "per-channel", "symmetric": True}
asym = {"kind": "linear8", "shape": [2, 2], "dtype": "BF16", "symmetric": False}
put("fuzz_compressed_format", "all_kinds", safetensors([
    ("p.lut", "F16", [1, 4], f16([-1, 0, 0.5, 2])), ("p.indices", "U8", [4], b"\xe4\x1b\x00\xff"),
    ("g.lut", "F16", [2, 2], f16([0, 1, -1, 3])), ("g.indices", "U8", [1], b"\xa5"),
    ("l.q", "I8", [2, 3], b"\x01\x02\xfd\x7f\x80\x00"), ("l.scale", "F32", [2], f32([0.1, 2])),
    ("a.q", "U8", [2, 2], b"\x00\x10\xff\x80"), ("a.scale", "F32", [2], f32([1, 0.5])),
    ("a.zero", "U8", [2], b"\x80\x10"),
    ("plain.bias", "F32", [2], f32([1, 2]))],
    {"sdpal:format": "sdpal-compressed/1", "sdpal:p": json.dumps(pal), "sdpal:g": json.dumps(grp),
     "sdpal:l": json.dumps(lin), "sdpal:a": json.dumps(asym), "format": "pt"}))
put("fuzz_compressed_format", "plain_file", safetensors([("w", "F16", [2], f16([1, 2]))]))

# ---- fuzz_checkpoint: header listings of single-file checkpoints
def listing(path, keep_configs):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    lines = []
    for k, v in h.items():
        if k == "__metadata__":
            if keep_configs:
                lines += [f"@{mk}={mv}" for mk, mv in v.items()]
            continue
        lines.append(f"{k} {v['dtype']} {','.join(str(d) for d in v['shape'])}")
    return "\n".join(lines) + "\n"


for i, arg in enumerate(sys.argv[1:3]):
    kind = ["sd1", "sd2"][i]
    put("fuzz_checkpoint", f"{kind}_inferred", listing(arg, False))
    if i == 0:
        put("fuzz_checkpoint", f"{kind}_embedded_configs", listing(arg, True))
put("fuzz_checkpoint", "keys", "\n".join([
    "model.diffusion_model.input_blocks.1.0.in_layers.0.weight F16 32",
    "model.diffusion_model.output_blocks.2.1.conv.weight F16 32,32,3,3",
    "model.diffusion_model.middle_block.1.proj_in.weight F16 32,32,1,1",
    "first_stage_model.decoder.up.0.upsample.conv.weight F16 4,4,3,3",
    "first_stage_model.encoder.mid.attn_1.q.weight F16 4,4,1,1",
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight F16 24,8",
    "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight F16 16,8"]) + "\n")

# ---- fuzz_tokenizer
for i, p in enumerate(["a photo of an astronaut riding a horse, (high quality:1.2)",
                       "<|startoftext|>Ünïcödé ＡＢＣ ﬁne café's &amp; &lt;b&gt; 123 ✨<|endoftext|>",
                       "don't    stop\n\tbelieving!!! ... ?",
                       "Größe İstanbul ǅ ß ΣΑΣ 日本語のテキスト 🙂👍🏽"]):
    put("fuzz_tokenizer", f"prompt{i}", p)
put("fuzz_tokenizer", "latin1", "caf\xe9 na\xefve".encode("latin-1"))

# ---- fuzz_tokenizer_files: a tiny byte-level BPE vocabulary
sep = "\n%%%%\n"
vocab = {"a": 0, "b": 1, "c": 2, "a</w>": 3, "b</w>": 4, "c</w>": 5, "ab": 6, "ab</w>": 7,
         "!": 8, "!</w>": 9, "<|startoftext|>": 10, "<|endoftext|>": 11}
merges = "#version: 0.2\na b\na b</w>\n"
special = {"bos_token": "<|startoftext|>", "eos_token": {"content": "<|endoftext|>"},
           "pad_token": "!", "unk_token": "<|endoftext|>"}
put("fuzz_tokenizer_files", "tiny", json.dumps(vocab) + sep + merges + sep + json.dumps(special))
put("fuzz_tokenizer_files", "added", json.dumps(vocab) + sep + merges + sep + "{}" + sep +
    json.dumps({"<cat-toy>": 12}))

# ---- fuzz_png: small PNGs of several colour types, with text chunks
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)


def png(w, h, bit_depth, color, rows, extra=b"", plte=None):
    raw = b"".join(b"\0" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color, 0, 0, 0))
    if plte:
        out += chunk(b"PLTE", plte)
    return out + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


put("fuzz_png", "rgb_2x2_text", png(2, 2, 8, 2, [b"\xff\0\0\0\xff\0", b"\0\0\xff\x80\x80\x80"],
    chunk(b"tEXt", b"parameters\0a cat\nSteps: 20, Sampler: Euler a, Seed: 1") +
    chunk(b"iTXt", "Title\0\0\0\0\0Größe ✨".encode())))
put("fuzz_png", "gray16_3x1", png(3, 1, 16, 0, [b"\x00\x00\x80\x00\xff\xff"]))
put("fuzz_png", "palette_2x1", png(2, 1, 8, 3, [b"\x00\x01"], chunk(b"tRNS", b"\x00"),
                                   plte=b"\x10\x20\x30\xa0\xb0\xc0"))
put("fuzz_png", "rgba_1x1_ztxt", png(1, 1, 8, 6, [b"\x01\x02\x03\x04"],
                                     chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"zipped"))))
put("fuzz_png", "gray_alpha_1bit", png(9, 2, 1, 0, [b"\xaa\x80", b"\x55\x00"]))

# ---- fuzz_infotext
put("fuzz_infotext", "a1111", "a castle on a hill, (masterpiece:1.2)\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.75, "
    "Clip skip: 2, Token merging ratio: 0.5, RNG: CPU, Lora hashes: \"a: 1, b: 2\", "
    "Version: sdpal 0.1.0")
put("fuzz_infotext", "multiline", "line one\nline two\nNegative prompt: a\nb\n"
    "Steps: 1, Sampler: Euler, CFG scale: 1e-05, Seed: 18446744073709551615, Size: 8x8")
put("fuzz_infotext", "no_fields", "just a prompt: with a colon, and commas")
put("fuzz_infotext", "structured", bytes(range(0, 120)))

# ---- fuzz_model_config: selector byte + file (see the harness)
def cfg(sel, name, path=None, text=None):
    if text is None:
        with open(path, "rb") as f:
            text = f.read()
    put("fuzz_model_config", name, bytes([sel]) + (text if isinstance(text, bytes) else text.encode()))


demo = "models/demo-fashion"
cfg(0, "unet_demo", f"{demo}/unet/config.json")
cfg(1, "vae_demo", f"{demo}/vae/config.json")
cfg(2, "text_demo", f"{demo}/text_encoder/config.json")
cfg(3 + 6 * 19, "scheduler_demo", f"{demo}/scheduler/scheduler_config.json")
cfg(3 + 6 * 7, "scheduler_dpm", text=json.dumps({
    "_class_name": "DPMSolverMultistepScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "use_karras_sigmas": True,
    "timestep_spacing": "leading", "steps_offset": 1, "prediction_type": "v_prediction",
    "_use_default_values": ["timestep_spacing"]}).replace('"LMC"', '-Infinity') +
    "\n")
cfg(3, "scheduler_python_words",
    text='{"beta_schedule": "linear", "lambda_min_clipped": -Infinity, "variance_type": null}')
cfg(4, "taesd", text=json.dumps({"act_fn": "relu", "upsample_fn": "nearest",
                                 "upsampling_scaling_factor": 2, "latent_channels": 4}))
cfg(5, "shard_index", text=json.dumps({"metadata": {"total_size": 8}, "weight_map": {
    "a": "diffusion_pytorch_model-00001-of-00002.safetensors",
    "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}))

# ---- fuzz_analysis: selector byte (even: analysis, odd: recipe file) + file
settings = {"format": "sdpal-mixed-bit-analysis/1", "prompts": ["a cat"], "seeds": [0], "steps": 1, "width": 64, "height": 64,
            "cfg_scale": 7.5, "sampler": "ddim", "timestep_spacing": "", "nbits": [2, 4],
            "min_elements": 10, "group_size": 0, "num_recipes": 3}
layers = ["down.0", "mid.0"]
analysis = {
    "format": "sdpal-mixed-bit-analysis/1", "model_version": "tiny", "settings": settings,
    "model": {"candidates": {"down.0": 100, "mid.0": 300},
              "unet_parameters": 1000, "fingerprint": "abc"},
    "baselines": {"original": 200.0, "linear_8bit": 45.5, "palettize_2bit": 20.0,
                  "palettize_4bit": 30.0, "recipe_3.50_bit_mixedpalette": 33.0},
    "single_layer": {str(n): {"metadata": {"nbits": n}, "down.0": [30.0 + n], "mid.0": [25.0 + n]}
                     for n in (2, 4)},
    "cumulative": {str(n): {"metadata": {"nbits": n, "cumulative": True, "candidates": layers,
                                         "sizes": [100, 300]},
                            "down.0": [40.0 + n], "mid.0": [28.0 + n]} for n in (2, 4)},
    "recipes": {"recipe_3.50_bit_mixedpalette": {"down.0": 2, "mid.0": 4}},
    "targets": {"bits": {"target": 3.5, "recipe": "recipe_3.50_bit_mixedpalette"}},
}
put("fuzz_analysis", "sdpal_analysis", bytes([2]) + json.dumps(analysis).encode())
apple = {k: v for k, v in analysis.items() if k in ("model_version", "baselines", "single_layer",
                                                     "cumulative", "recipes")}
put("fuzz_analysis", "apple_analysis", bytes([0]) + json.dumps(apple).encode())
put("fuzz_analysis", "recipe_plain", bytes([1]) + json.dumps({"down.0": 4, "mid.0": 16}).encode())
put("fuzz_analysis", "recipe_named", bytes([3]) + json.dumps(
    {"recipes": {"recipe_4.00_bit_mixedpalette": {"down.0": 4}}, "settings": {"group_size": 8}}).encode())

# ---- fuzz_calibration: selector byte (even: calibration, odd: int8 analysis) + file
cal = {"format": "sdpal-int8-calibration/1", "model": "tiny",
       "settings": {"prompts": ["a cat"], "steps": 4, "width": 64},
       "layers": {"conv_in": {"min": -1.5, "max": 2.0, "int8": True, "gflops": 0.1},
                  "down_blocks.0.attentions.0.proj_in": {"min": 0.0, "max": 0.0, "int8": False,
                                                         "gflops": 0.02}}}
put("fuzz_calibration", "calibration", bytes([0]) + json.dumps(cal).encode())
int8a = {"format": "sdpal-int8-analysis/1", "model_version": "tiny",
         "settings": {"prompts": ["a cat"], "seeds": [0], "steps": 1, "width": 64, "height": 64,
                      "cfg_scale": 7.5, "sampler": "ddim", "timestep_spacing": "",
                      "min_work_share": 0.001, "calibration": "d1g3st", "target_psnr": 30.0},
         "layers": [{"name": "conv_in", "gflops": 0.1}, {"name": "mid", "gflops": 0.5}],
         "total_gflops": 1.0, "baselines": {"all_int8": 31.5},
         "single_layer": {"conv_in": [40.0], "mid": [35.0]},
         "selection": {"target_psnr": 30.0, "order": ["mid", "conv_in"], "probes": {"1": 36.0, "2": 31.5},
                       "int8_layers": 2, "psnr": 31.5, "int8_gflops": 0.6, "total_gflops": 1.0}}
put("fuzz_calibration", "int8_analysis", bytes([1]) + json.dumps(int8a).encode())

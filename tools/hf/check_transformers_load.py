#!/usr/bin/env python3
"""Checks that transformers loads a directory written by webattn's savePretrained.

    python tools/hf/check_transformers_load.py DIR [--json DIR/webattn_check.json] [--tol 1e-4]
                                                   [--attn eager]

DIR holds config.json + model.safetensors (from `savePretrained`) and, by default,
webattn_check.json (from tools/hf/export-for-transformers.mjs): the inputs and webattn's float32
logits. The script loads DIR with `<architectures[0]>.from_pretrained` (transformers 5.17), fails
on any missing / unexpected / mismatched key, runs the same inputs in float64, and prints
max |logits diff| and the norm-relative error. Exit status 1 when the relative error exceeds --tol.
"""
import argparse
import json
import os
import sys

import torch
import transformers


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--json", default=None, help="webattn logits + inputs (default DIR/webattn_check.json)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max norm-relative logits error")
    ap.add_argument("--attn", default="eager", help="attn_implementation transformers uses")
    a = ap.parse_args()
    path = a.json or os.path.join(a.dir, "webattn_check.json")
    with open(path) as f:
        check = json.load(f)
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    arch = cfg["architectures"][0]
    cls = getattr(transformers, arch)
    model, info = cls.from_pretrained(a.dir, attn_implementation=a.attn, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: loaded {arch} from {a.dir}")
    if problems:
        print(f"FAIL: loading info reports {problems}")
        return 1
    model = model.to(torch.float64).eval()
    with torch.no_grad():
        if "input_ids" in check["inputs"]:
            out = model(input_ids=torch.tensor(check["inputs"]["input_ids"], dtype=torch.long))
        else:
            shape = check["inputs"]["pixel_values_shape"]
            px = torch.tensor(check["inputs"]["pixel_values"], dtype=torch.float64).reshape(shape)
            out = model(pixel_values=px)
    ours = torch.tensor(check["logits"], dtype=torch.float64).reshape(check["logits_shape"])
    theirs = out.logits
    if tuple(theirs.shape) != tuple(ours.shape):
        print(f"FAIL: logits shape {tuple(theirs.shape)} (transformers) vs {tuple(ours.shape)} (webattn)")
        return 1
    diff = (theirs - ours).abs().max().item()
    rel = diff / theirs.abs().max().item()
    print(f"max |logits diff| = {diff:.3e}, norm-relative = {rel:.3e} (tol {a.tol:g})")
    if not rel <= a.tol:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

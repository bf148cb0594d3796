"""PyTorch int8 inference speed of a quantlab spec: static post-training quantization (FX graph
mode, oneDNN backend: the one this Debian build has), calibrated on random inputs, timed at a
given batch size and thread count. Prints one JSON object.
    torch_int8.py --spec FILE --batch B --threads T [--seconds S] [--fp32]"""
import argparse
import json
import time

import torch

from torch_spec import SpecNet, input_shape


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fp32", action="store_true", help="time the float model instead")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    text = open(a.spec).read()
    c, h, w = input_shape(text)
    net = SpecNet(text).eval()
    x = torch.randn(a.batch, c, h, w)
    if not a.fp32:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "onednn"
        qm = get_default_qconfig_mapping("onednn")
        prepared = prepare_fx(net, qm, example_inputs=(x[:1],))
        with torch.no_grad():
            for _ in range(8):
                prepared(torch.randn(16, c, h, w))
        net = convert_fx(prepared)
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            net(x)
            n += a.batch
        dt = time.perf_counter() - t0
    print(json.dumps({"images_per_s": n / dt, "batch": a.batch, "threads": a.threads,
                      "engine": "fp32" if a.fp32 else torch.backends.quantized.engine}))


if __name__ == "__main__":
    main()

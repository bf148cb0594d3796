"""PyTorch training speed for a quantd spec: N timed batches of SGD (momentum, weight decay),
after warm-up, on preloaded random data (so PyTorch pays no data pipeline; quantlab does).
Prints one JSON object. Usage: torch_train.py --spec F --batches N --batch B --threads T"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_spec import SpecNet, input_shape  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--spec", required=True)
ap.add_argument("--batches", type=int, default=50)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
text = open(a.spec).read()
net = SpecNet(text).train()
c, h, w = input_shape(text)
x = torch.randn(a.batch, c, h, w)
y = torch.randint(0, 10, (a.batch,))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()


for _ in range(5):
    step()
t0 = time.perf_counter()
for _ in range(a.batches):
    step()
dt = time.perf_counter() - t0
print(json.dumps({"peer": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
                  "batch": a.batch, "batches": a.batches, "seconds": dt,
                  "images_per_s": a.batches * a.batch / dt}))

"""Builds a PyTorch module from a quantd model spec (nn/model.h), so a benchmark or a check runs
the very network quantlab runs. Stdlib + torch only."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def parse(text):
    nodes, shape = [], None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tok = line.split()
        if tok[0] == "model":
            continue
        kv = dict(t.split("=", 1) for t in tok[1:])
        nodes.append((tok[0], kv))
    return nodes


class SpecNet(nn.Module):
    def __init__(self, text):
        super().__init__()
        self.plan = []  # (op, module-or-args, input indices)
        self.mods = nn.ModuleList()
        names, shapes = {}, []
        for i, (op, kv) in enumerate(parse(text)):
            name = kv.get("name", f"{op}{i}")
            if op == "input":
                shapes.append((int(kv["c"]), int(kv["h"]), int(kv["w"])))
                self.plan.append(("input", None, []))
                names[name] = i
                continue
            ins = [names[n] for n in kv["in"].split(",")] if "in" in kv else [i - 1]
            c, h, w = shapes[ins[0]]
            mod = None
            if op == "conv":
                k, s, p = int(kv["k"]), int(kv.get("stride", 1)), int(kv.get("pad", 0))
                g, o = int(kv.get("groups", 1)), int(kv["out"])
                mod = nn.Conv2d(c, o, k, s, p, groups=g, bias=kv.get("bias", "0") == "1")
                c, h, w = o, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            elif op == "bn":
                mod = nn.BatchNorm2d(c)
            elif op in ("maxpool", "avgpool"):
                k = int(kv["k"])
                s = int(kv.get("stride", k))
                mod = (k, s)
                h, w = (h - k) // s + 1, (w - k) // s + 1
            elif op == "gap":
                h = w = 1
            elif op == "flatten":
                c, h, w = c * h * w, 1, 1
            elif op == "dense":
                o = int(kv["out"])
                mod = nn.Linear(c * h * w, o, bias=kv.get("bias", "1") == "1")
                c, h, w = o, 1, 1
            if isinstance(mod, nn.Module):
                self.mods.append(mod)
            self.plan.append((op, mod, ins))
            shapes.append((c, h, w))
            names[name] = i

    def forward(self, x):
        outs = []
        for op, mod, ins in self.plan:
            a = outs[ins[0]] if ins else x
            if op == "input":
                y = x
            elif op in ("conv", "bn"):
                y = mod(a)
            elif op == "dense":
                y = mod(a.flatten(1))
            elif op == "relu":
                y = F.relu(a)
            elif op == "relu6":
                y = F.relu6(a)
            elif op == "maxpool":
                y = F.max_pool2d(a, mod[0], mod[1])
            elif op == "avgpool":
                y = F.avg_pool2d(a, mod[0], mod[1])
            elif op == "gap":
                y = F.adaptive_avg_pool2d(a, 1)
            elif op == "flatten":
                y = a.flatten(1)
            elif op == "add":
                y = a + outs[ins[1]]
            else:
                raise ValueError(f"unknown op {op}")
            outs.append(y)
        return outs[-1]


def input_shape(text):
    for op, kv in parse(text):
        if op == "input":
            return int(kv["c"]), int(kv["h"]), int(kv["w"])
    raise ValueError("spec has no input")

#!/usr/bin/env python3
"""PyTorch's side of tests/test_torch.c: the zoo models computed by
PyTorch itself (torchvision's resnet18 and mobilenet_v2, and a CIFAR
ResNet-20 defined here exactly as tl_zoo_resnet_cifar documents it).

  torch_ref.py make MODEL DIR BATCH SIZE LR
      Seeded random init, then three SGD steps in train mode on random
      data (so the batchnorm running statistics are not their defaults);
      writes DIR/init.safetensors (the state_dict, num_batches_tracked
      included), DIR/x.f32 (a BATCH x SIZE x SIZE x 3 input batch, NHWC,
      float32 little-endian), DIR/labels.i32 (BATCH int32 labels),
      DIR/logits.f32 (the eval() logits of x, BATCH x 10), DIR/loss.txt
      (the train-mode loss of the step below) and, after one SGD step
      (lr LR, momentum 0, no weight decay, CrossEntropyLoss mean) in train
      mode on (x, labels), DIR/updated.safetensors; and the same step
      computed in float64 from the same float32 start (the exact step, as
      far as float32 can tell), rounded to float32, DIR/updated64.safetensors.
  torch_ref.py check MODEL DIR BATCH SIZE
      Checks that DIR/libtl.safetensors (libtl's PyTorch-layout export) has
      exactly the keys, dtypes and shapes of the model's state_dict()
      (num_batches_tracked included), loads it with
      load_state_dict(strict=True), runs eval() on DIR/x.f32 and compares
      with DIR/libtl_logits.f32 (libtl's predictions): exits 1 when
      max |diff| / max |logit| exceeds 1e-4.

safetensors is read and written here with the standard library and numpy
(the safetensors package is not in Debian): an 8-byte little-endian header
length, a JSON header, raw little-endian data.
"""
import copy
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock

CLASSES = 10
DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}
NP_DTYPES = {"F32": "<f4", "I64": "<i8", "F16": "<f2"}


def fail(msg):
    print("torch_ref: " + msg, file=sys.stderr)
    sys.exit(1)


def write_safetensors(path, sd):
    header, blobs, at = {}, [], 0
    for name, t in sd.items():
        if t.dtype not in DTYPES:
            fail("%s: dtype %s" % (name, t.dtype))
        code, npd = DTYPES[t.dtype]
        b = t.detach().cpu().contiguous().numpy().astype(npd).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if info["dtype"] not in NP_DTYPES:
            fail("%s: dtype %s" % (name, info["dtype"]))
        begin, end = info["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=NP_DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(a.astype(a.dtype.newbyteorder("="))).clone()
    return out


def resnet_cifar(depth=20, classes=CLASSES):
    """He et al. 2016 section 4.2 with projection shortcuts at stages 2 and
    3, named as torchvision's ResNet (and tl_zoo_resnet_cifar)."""
    n = (depth - 2) // 6

    class ResNetCifar(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU(inplace=True)
            in_ch = 16
            for s, ch in enumerate((16, 32, 64)):
                blocks = []
                for b in range(n):
                    stride = 2 if s > 0 and b == 0 else 1
                    down = None
                    if stride != 1 or in_ch != ch:
                        down = nn.Sequential(nn.Conv2d(in_ch, ch, 1, stride, bias=False), nn.BatchNorm2d(ch))
                    blocks.append(BasicBlock(in_ch, ch, stride, down))
                    in_ch = ch
                setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNetCifar()


def build(name):
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=CLASSES)
    if name == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2(num_classes=CLASSES)
        m.classifier[0].p = 0.0  # libtl's zoo model is built without dropout
        return m
    if name == "resnet20":
        return resnet_cifar(20)
    fail("unknown model " + name)


def nhwc_bytes(x):
    return x.permute(0, 2, 3, 1).contiguous().numpy().astype("<f4").tobytes()


def make(name, d, batch, size, lr):
    torch.manual_seed(1234)
    model = build(name)
    loss_fn = nn.CrossEntropyLoss()
    # Warm-up: the running statistics and weights move away from defaults.
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    model.train()
    for _ in range(3):
        xw = torch.randn(batch, 3, size, size)
        yw = torch.randint(0, CLASSES, (batch,))
        opt.zero_grad()
        loss_fn(model(xw), yw).backward()
        opt.step()
    write_safetensors(d + "/init.safetensors", model.state_dict())
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.randint(0, CLASSES, (batch,))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    with open(d + "/x.f32", "wb") as f:
        f.write(nhwc_bytes(x))
    with open(d + "/labels.i32", "wb") as f:
        f.write(y.numpy().astype("<i4").tobytes())
    with open(d + "/logits.f32", "wb") as f:
        f.write(logits.numpy().astype("<f4").tobytes())
    # The same step in float64 from the same float32 start: the exact step
    # to float32's eyes, written rounded to float32.
    exact = copy.deepcopy(model).double()
    for m, xx in ((model, x), (exact, x.double())):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
        opt.zero_grad()
        loss = loss_fn(m(xx), y)
        loss.backward()
        opt.step()
        if m is model:
            loss32 = loss.item()
            with open(d + "/loss.txt", "w") as f:
                f.write("%.9g\n" % loss32)
            write_safetensors(d + "/updated.safetensors", model.state_dict())
    write_safetensors(d + "/updated64.safetensors",
                      {k: v.float() if v.dtype == torch.float64 else v for k, v in exact.state_dict().items()})
    print("torch_ref: %s: wrote %d tensors, train loss %.6f" % (name, len(model.state_dict()), loss32))


def check(name, d, batch, size):
    model = build(name)
    sd = read_safetensors(d + "/libtl.safetensors")
    # Exactly the state dict's keys, dtypes and shapes (num_batches_tracked:
    # int64 scalars) - stricter than load_state_dict, which would fill a
    # missing counter of a dict without version metadata and convert dtypes.
    want = model.state_dict()
    if set(sd) != set(want):
        fail("%s: keys differ: missing %s, unexpected %s" % (name, sorted(set(want) - set(sd)),
                                                               sorted(set(sd) - set(want))))
    for k, v in want.items():
        if sd[k].dtype != v.dtype or sd[k].shape != v.shape:
            fail("%s: %s is %s %s, PyTorch's %s %s" % (name, k, sd[k].dtype, tuple(sd[k].shape), v.dtype,
                                                      tuple(v.shape)))
    model.load_state_dict(sd, strict=True)  # raises on a missing or unexpected key
    model.eval()
    with open(d + "/x.f32", "rb") as f:
        x = np.frombuffer(f.read(), dtype="<f4").reshape(batch, size, size, 3)
    x = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        ours = model(x)
    with open(d + "/libtl_logits.f32", "rb") as f:
        theirs = torch.from_numpy(np.frombuffer(f.read(), dtype="<f4").astype(np.float32)).reshape(batch, CLASSES)
    diff = (ours - theirs).abs().max().item()
    scale = ours.abs().max().item()
    rel = diff / scale
    print("torch_ref: %s: libtl's export loaded strict by PyTorch; its eval logits vs libtl's predictions: "
          "max |diff| %.3g, max |logit| %.3g, relative %.3g" % (name, diff, scale, rel))
    if not rel <= 1e-4:
        fail("%s: libtl's predictions differ from PyTorch's on libtl's export (relative %.3g > 1e-4)" % (name, rel))


def main():
    torch.set_num_threads(1)
    a = sys.argv[1:]
    if len(a) == 6 and a[0] == "make":
        make(a[1], a[2], int(a[3]), int(a[4]), float(a[5]))
    elif len(a) == 5 and a[0] == "check":
        check(a[1], a[2], int(a[3]), int(a[4]))
    else:
        fail("usage: torch_ref.py make MODEL DIR BATCH SIZE LR | check MODEL DIR BATCH SIZE")


if __name__ == "__main__":
    main()

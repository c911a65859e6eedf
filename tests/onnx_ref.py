"""onnx_ref.py - reference ONNX files for tests/test_onnx_load.c, written by
PyTorch's own exporter (Debian's python3-torch, python3-torchvision and
python3-onnx).

    onnx_ref.py make DIR BATCH SIZE MODEL:MODE...

MODEL: ops (the other operators, see Ops), seed_cnn (libtl's seed CNN: conv2d(32, 3x3, relu) -> maxpool ->
conv2d(64, 3x3, relu) -> maxpool -> flatten -> dense(10, softmax)),
resnet20 (tests/torch_ref.py's CIFAR ResNet-20), resnet18, mobilenet_v2
(torchvision, 10 classes). A few seeded SGD steps first, so that the batch
norm statistics are not their defaults. MODE:
  folded    eval(), torch.onnx.export's constant folding: BN folded into Conv
  preserve  training=TrainingMode.PRESERVE, no folding: BatchNormalization kept
  f16, bf16 preserve, with every float initializer stored as FLOAT16 /
            BFLOAT16 (the model's tensors rounded first and not folded, so
            the stored values are exact and PyTorch's outputs are theirs)
  float_data folded, initializers in float_data instead of raw_data
  external  folded, initializers in the external file weights.bin
  dynamic   folded, with a dynamic batch axis
folded, preserve and dynamic may end in an opset number (preserve17;
default 13).
For each MODEL:MODE, writes into DIR/MODEL-MODE/ (one process for all of
them: importing torch takes seconds) model.onnx, x.f32 (BATCH NHWC images, little-endian) and
DIR/logits.f32 (PyTorch's eval() outputs for them); with preserve also
state.safetensors, the model's state_dict().
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402  (the ResNet-20 and the torchvision models)

import onnx  # noqa: E402
from onnx import TensorProto, numpy_helper  # noqa: E402


def fail(msg):
    print("onnx_ref: " + msg, file=sys.stderr)
    sys.exit(1)


def seed_cnn(classes=10):
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 6 * 6, classes), nn.Softmax(dim=1))


class Ops(nn.Module):
    """Every other operator libtl reads, as PyTorch exports them (but Pad,
    which torch.onnx writes as a chain of shape operators; test_onnx_load.c
    writes its own): a dilated conv, a strided grouped conv, a depthwise conv,
    AveragePool with and without count_include_pad, SiLU (Sigmoid * x),
    LeakyReLU, Hardsigmoid, Hardswish, Tanh, Sigmoid, ReLU6 (Clip), Concat,
    Dropout, a batchnorm on flat features, ReduceMean over (H, W), MatMul +
    Add, Reshape to (N, -1)."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, dilation=2)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.avg1 = nn.AvgPool2d(3, 1, padding=1, count_include_pad=False)
        self.avg2 = nn.AvgPool2d(3, 1, padding=1, count_include_pad=True)
        self.drop = nn.Dropout(0.3)
        self.bn1d = nn.BatchNorm1d(24)
        self.w = nn.Parameter(torch.randn(24, classes) * 0.2)
        self.b = nn.Parameter(torch.randn(classes) * 0.1)

    def forward(self, x):
        x = self.conv1(x)
        x = x * torch.sigmoid(x)
        x = nn.functional.leaky_relu(self.conv2(x), 0.2)
        y = nn.functional.hardswish(self.bn(self.dw(x)))
        y = nn.functional.relu6(self.pw(y))
        a = torch.tanh(self.avg1(y))
        b = nn.functional.hardsigmoid(self.avg2(x))
        z = torch.cat([a, b, torch.sigmoid(y)], 1)
        z = self.drop(z).mean(dim=(2, 3))
        z = self.bn1d(z.reshape(-1, 24))
        return z @ self.w + self.b


class SeedView(nn.Module):
    """The seed CNN flattening with x.view(x.size(0), -1), which torch.onnx
    writes as Shape -> Gather -> Unsqueeze -> Concat -> Reshape when the
    batch axis is dynamic."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc = nn.Linear(64 * 6 * 6, classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.view(x.size(0), -1))


def build(name):
    if name == "seed_cnn":
        return seed_cnn()
    if name == "seed_view":
        return SeedView()
    if name == "ops":
        return Ops()
    return torch_ref.build(name)


def round_params(model, dtype):
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype == torch.float32:
                t.copy_(t.to(dtype).float())


def convert_initializers(path, mode):
    m = onnx.load(path)
    converted = 0
    for t in m.graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        converted += 1
        a = numpy_helper.to_array(t).astype(np.float32)
        if mode == "float_data":
            t.ClearField("raw_data")
            t.float_data.extend(a.ravel().tolist())
        elif mode == "f16":
            if not np.array_equal(a.astype("<f2").astype(np.float32), a):
                fail("%s is not exactly a FLOAT16 tensor" % t.name)
            t.data_type = TensorProto.FLOAT16
            t.raw_data = a.astype("<f2").tobytes()
        elif mode == "bf16":
            bits = (a.astype("<f4").view("<u4") >> 16).astype("<u2")  # exact: rounded before export
            t.data_type = TensorProto.BFLOAT16
            t.raw_data = bits.tobytes()
    if converted == 0:
        fail("%s: no FLOAT initializer to store as %s" % (path, mode))
    if mode == "external":
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
    else:
        onnx.save_model(m, path)


def make(name, mode, d, batch, size):
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    model = build(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(3):
        xw = torch.randn(batch, 3, size, size)
        yw = torch.randint(0, 10, (batch,))
        opt.zero_grad()
        loss_fn(model(xw), yw).backward()
        opt.step()
    model.eval()
    if mode == "f16":
        round_params(model, torch.float16)
    elif mode == "bf16":
        round_params(model, torch.bfloat16)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with torch.no_grad():
        logits = model(x)
    path = d + "/model.onnx"
    opset = 13
    for base in ("folded", "preserve", "dynamic"):
        if mode.startswith(base) and mode[len(base):].isdigit():
            mode, opset = base, int(mode[len(base):])
    if mode in ("preserve", "f16", "bf16"):
        torch.onnx.export(model, x[:1], path, opset_version=opset, training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=False)
    elif mode == "dynamic":
        torch.onnx.export(model, x[:1], path, opset_version=opset, do_constant_folding=True,
                          input_names=["images"], dynamic_axes={"images": {0: "batch"}})
    else:
        torch.onnx.export(model, x[:1], path, opset_version=opset, do_constant_folding=True)
    if mode in ("f16", "bf16", "float_data", "external"):
        convert_initializers(path, mode)
    if mode == "preserve":  # the state_dict, to load into the imported model by name
        torch_ref.write_safetensors(d + "/state.safetensors", model.state_dict())
    ops = sorted({n.op_type for n in onnx.load(path, load_external_data=False).graph.node})
    with open(d + "/x.f32", "wb") as f:
        f.write(x.permute(0, 2, 3, 1).contiguous().numpy().astype("<f4").tobytes())
    with open(d + "/logits.f32", "wb") as f:
        f.write(logits.numpy().astype("<f4").tobytes())
    print("onnx_ref: %s %s, opset %d: operators %s" % (name, mode, opset, " ".join(ops)))


def main():
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "make":
        for case in a[4:]:
            name, mode = case.split(":")
            make(name, mode, "%s/%s-%s" % (a[1], name, mode), int(a[2]), int(a[3]))
    else:
        fail("usage: onnx_ref.py make DIR BATCH SIZE MODEL:MODE...")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""onnx_check.py - the ONNX files tl_model_save_onnx() wrote, checked by the
onnx package itself (Debian's python3-onnx): tests/test_onnx_save.c writes
them with a manifest and runs this script on it.

Usage: onnx_check.py MANIFEST

Each manifest line: FILE INPUT N D1 D2 D3 EXPECTED WIDTH LAYOUT FOLD OPSET BNS
(INPUT and EXPECTED are for the ONNX Runtime script; here WIDTH, the
output's width per example, and D1..D3, the input's dims after the batch,
are checked against the declared and the inferred shapes). For every file:
 - onnx.checker.check_model(model, full_check=True) accepts it (full_check
   runs strict shape inference too);
 - onnx.shape_inference.infer_shapes(strict_mode=True) infers every node's
   output, and the graph output's inferred shape is (N, WIDTH);
 - producer "libtl", the opset asked for, metadata with libtl's version and
   the layer list (a JSON list of {name, kind, tensor}, every tensor of it
   present in the graph), every node named;
 - batch normalization: FOLD 0 keeps BNS BatchNormalization nodes; FOLD 1
   leaves none right after a Conv or a Gemm.
Exit status 77 when the onnx package cannot be imported, 1 on any failure.
"""
import json
import sys

try:
    import onnx
    from onnx import shape_inference
except ImportError:
    print("onnx_check.py: skipped: cannot import onnx")
    sys.exit(77)


def dims_of(value_info):
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_param if d.HasField("dim_param") else d.dim_value)
    return out


def check(line):
    f = line.split()
    path, n, d, width, layout, fold, opset, bns = f[0], int(f[2]), [int(x) for x in f[3:6]], int(f[7]), f[8], int(f[9]), int(f[10]), int(f[11])
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    g = inferred.graph
    problems = []
    if model.producer_name != "libtl":
        problems.append("producer_name %r" % model.producer_name)
    ops = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if ops != [opset]:
        problems.append("opset_import %r, expected [%d]" % (ops, opset))
    meta = {p.key: p.value for p in model.metadata_props}
    if not meta.get("libtl.version"):
        problems.append("no libtl.version in the metadata")
    if meta.get("libtl.input_layout") != layout.upper():
        problems.append("libtl.input_layout %r" % meta.get("libtl.input_layout"))
    layers = json.loads(meta.get("libtl.layers", "[]"))
    names = {t.name for t in g.initializer} | {i.name for i in g.input}
    for node in g.node:
        names.update(node.output)
        if not node.name:
            problems.append("a %s node without a name" % node.op_type)
    for layer in layers:
        if layer["tensor"] not in names:
            problems.append("layer %s: tensor %r not in the graph" % (layer["name"], layer["tensor"]))
    if not layers:
        problems.append("no layer list in the metadata")
    if len(g.input) != 1 or len(g.output) != 1:
        problems.append("%d inputs, %d outputs" % (len(g.input), len(g.output)))
    if dims_of(g.input[0]) != ["N"] + d:
        problems.append("input dims %r, expected %r" % (dims_of(g.input[0]), ["N"] + d))
    out_dims = dims_of(g.output[0])
    if out_dims[0] != "N" or out_dims[1:] and __import__("math").prod(out_dims[1:]) != width:
        problems.append("output dims %r, width %d expected" % (out_dims, width))
    # every intermediate tensor's shape was inferred
    known = {v.name for v in g.value_info} | {o.name for o in g.output} | names - {n_ for node in g.node for n_ in node.output}
    for node in g.node:
        for o in node.output:
            if o not in known:
                problems.append("node %s: no inferred shape for %r" % (node.name, o))
    producers = {o: node for node in g.node for o in node.output}
    bn_nodes = [node for node in g.node if node.op_type == "BatchNormalization"]
    if fold == 0 and len(bn_nodes) != bns:
        problems.append("%d BatchNormalization nodes, expected %d" % (len(bn_nodes), bns))
    if fold == 1:
        for node in bn_nodes:
            p = producers.get(node.input[0])
            if p is not None and p.op_type in ("Conv", "Gemm"):
                problems.append("node %s: BatchNormalization after %s %s not folded" % (node.name, p.op_type, p.name))
    status = "ok" if not problems else "FAILED"
    print("onnx_check: %s: %d nodes, %d initializers, opset %d, checker and strict shape inference %s"
          % (path.rsplit("/", 1)[-1], len(g.node), len(g.initializer), opset, status))
    for p in problems:
        print("  " + p)
    return not problems


def main():
    ok = True
    with open(sys.argv[1]) as m:
        for line in m:
            if line.strip():
                try:
                    ok = check(line) and ok
                except Exception as e:  # the checker's own errors name the node
                    print("onnx_check: %s: %s: %s" % (line.split()[0], type(e).__name__, e))
                    ok = False
    sys.exit(0 if ok else 1)


main()

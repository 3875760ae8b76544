#!/usr/bin/env python3
"""Edits a fixed-batch ONNX model (batch 1, as most Ultralytics exports) into a
dynamic-batch one, so that trtinfer batches frames of many streams into one run
instead of one frame at a time (see docs/performance.md, "A heavier model").

    python3 scripts/make-dynamic-batch.py IN.onnx OUT.onnx [--image dog.jpg]
    python3 scripts/make-dynamic-batch.py --check REF.onnx MODEL.onnx [--tolerance T]

The edit:
- the first dimension of every graph input and output becomes the symbolic
  batch `N`;
- every Reshape whose target shape is a constant gets a batch-agnostic copy of
  it: the leading entry becomes -1 (inferred: batch x whatever it was, as in
  YOLOv12's area attention, which folds 4 areas into the batch) or, where the
  shape already has a -1, 0 (copied from the input's first dimension, which
  must then be the batch: only a leading 1 is rewritten so);
- the stale intermediate shapes (value_info) are dropped, then ONNX shape
  inference (strict) and the full checker run on the result.
Other constant shapes (Expand, Tile, ConstantOfShape, Resize sizes) are listed
but left alone: a leading 1 there broadcasts. Whether the heuristics held is not
assumed: the check below is what decides.

The check (run after every edit, or alone with --check): onnxruntime on the CPU
runs MODEL on a batch of 4 different images (IMAGE letterboxed into the input,
its mirror image, a darker copy and a crop of it) and REF on each image alone;
the largest absolute difference per output is printed and must stay below the
tolerance (1e-3 by default). Inputs are cast to each model's input type, so
--check also runs a float16 twin (scripts/make-fp16-model.py) against itself or
against the float32 model with a wider tolerance.

Needs: numpy, onnx, onnxruntime, Pillow (pip install onnx onnxruntime pillow).
Exit status 0 only if the edit and the check succeeded; OUT is written only then.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

BATCH = "N"
CHECK_BATCH = 4


class EditError(Exception):
    """The model cannot be made batch-agnostic by this script."""


def constant_tensors(graph):
    """Name -> numpy value of initializers and Constant nodes' outputs."""
    inputs = {i.name for i in graph.input}
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name not in inputs}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values


def set_batch_dim(value_info, what):
    dims = value_info.type.tensor_type.shape.dim
    if not dims:
        raise EditError(f"{what} '{value_info.name}' has no shape")
    first = dims[0]
    if first.HasField("dim_param"):
        raise EditError(f"{what} '{value_info.name}' already has a symbolic batch '{first.dim_param}'")
    if first.dim_value != 1:
        raise EditError(
            f"{what} '{value_info.name}' has a fixed batch of {first.dim_value}; "
            "only batch-1 models are edited (their constants hold the batch as 1)")
    first.Clear()
    first.dim_param = BATCH


def batch_agnostic_shape(shape, node):
    """The Reshape target `shape` with its leading (batch) entry made to follow
    the input's batch, or None if it already does."""
    allow_zero = any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
    if shape.ndim != 1 or shape.size == 0 or shape[0] in (-1, 0):
        return None
    new = shape.copy()
    if -1 not in shape[1:]:
        new[0] = -1
    elif shape[0] == 1 and not allow_zero:
        new[0] = 0
    else:
        raise EditError(
            f"Reshape '{node.name}' has the shape {shape.tolist()}: its leading "
            f"{shape[0]} cannot follow the batch (another entry is already -1)")
    return new


def make_dynamic(model):
    graph = model.graph
    for i in graph.input:
        set_batch_dim(i, "input")
    for o in graph.output:
        set_batch_dim(o, "output")
    constants = constant_tensors(graph)
    rewritten = {}  # original shape name -> new initializer name
    notes = []
    for node in graph.node:
        if node.op_type == "Reshape":
            name = node.input[1]
            if name not in constants:
                continue  # computed at run time (Shape -> ...): follows the batch already
            if name not in rewritten:
                new = batch_agnostic_shape(constants[name], node)
                if new is None:
                    rewritten[name] = name
                else:
                    new_name = f"{name}_dynbatch"
                    graph.initializer.append(numpy_helper.from_array(new.astype(np.int64), new_name))
                    rewritten[name] = new_name
                    notes.append(f"Reshape shape {name}: {constants[name].tolist()} -> {new.tolist()}")
            node.input[1] = rewritten[name]
        elif node.op_type in ("Expand", "Tile", "ConstantOfShape", "Resize"):
            index = {"Expand": 1, "Tile": 1, "ConstantOfShape": 0, "Resize": 3}[node.op_type]
            if len(node.input) > index and node.input[index] in constants:
                value = constants[node.input[index]]
                notes.append(f"left alone: {node.op_type} '{node.name}' with constant {value.tolist()}")
    # Intermediate shapes were inferred for batch 1: infer them again.
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(model, full_check=True)
    return model, notes


# --- The check ---

def letterbox(image, width, height):
    """`image` scaled into width x height keeping its aspect ratio, centred,
    padded with 114: HWC uint8."""
    from PIL import Image
    scale = min(width / image.width, height / image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGB", (width, height), (114, 114, 114))
    canvas.paste(image.resize((w, h), Image.BILINEAR), ((width - w) // 2, (height - h) // 2))
    return np.asarray(canvas)


def check_images(path, width, height):
    """Four different NCHW float32 images in 0..1 from `path`."""
    from PIL import Image, ImageOps
    image = Image.open(path).convert("RGB")
    crop = image.crop((image.width // 8, image.height // 4, image.width * 3 // 4, image.height))
    variants = [
        letterbox(image, width, height),
        letterbox(ImageOps.mirror(image), width, height),
        (letterbox(image, width, height) * 0.6).astype(np.uint8),
        letterbox(crop, width, height),
    ]
    return np.stack([v.transpose(2, 0, 1) for v in variants]).astype(np.float32) / 255.0


def session(model):
    """A CPU session of `model`, a path or the serialized model."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def numpy_type(ort_type):
    return {"tensor(float)": np.float32, "tensor(float16)": np.float16}[ort_type]


def check(reference, model, image, tolerance):
    """REF at batch 1 on each image against MODEL (a path or the serialized
    model) at batch 4; True if every output is within `tolerance`."""
    ref, dyn = session(reference), session(model)
    ref_in, dyn_in = ref.get_inputs()[0], dyn.get_inputs()[0]
    if len(ref.get_inputs()) != 1:
        raise EditError("the check handles models with one input")
    height, width = ref_in.shape[2], ref_in.shape[3]
    if not isinstance(dyn_in.shape[0], str):
        raise EditError(f"input '{dyn_in.name}' has a fixed batch {dyn_in.shape[0]}, not a symbolic one")
    images = check_images(image, width, height)
    batched = dyn.run(None, {dyn_in.name: images.astype(numpy_type(dyn_in.type))})
    singles = [ref.run(None, {ref_in.name: images[i:i + 1].astype(numpy_type(ref_in.type))})
               for i in range(len(images))]
    ok = True
    for k, out in enumerate(dyn.get_outputs()):
        got = batched[k].astype(np.float32)
        want = np.concatenate([s[k] for s in singles]).astype(np.float32)
        if got.shape != want.shape:
            print(f"  {out.name}: batch {CHECK_BATCH} shape {list(got.shape)} != {list(want.shape)}")
            ok = False
            continue
        diff = float(np.abs(got - want).max())
        per_image = [float(np.abs(got[i] - want[i]).max()) for i in range(len(images))]
        verdict = "ok" if diff < tolerance else f"FAIL (tolerance {tolerance:g})"
        print(f"  {out.name} {list(got.shape)}: max abs difference {diff:.3g} "
              f"(per image {', '.join(f'{d:.3g}' for d in per_image)}; values up to {float(np.abs(want).max()):.4g}) {verdict}")
        # Different images must give different outputs, or the check proved nothing.
        if np.abs(want[0] - want[1]).max() == 0:
            print("  the check images gave identical outputs: the check is void")
            ok = False
        ok &= diff < tolerance
    return ok


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get("CUDAINFER_SHARED_DIR", os.path.join(repo, "..", "shared"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare MODEL at batch 4 with IN (REF) at batch 1")
    parser.add_argument("input", metavar="IN.onnx")
    parser.add_argument("output", metavar="OUT.onnx")
    parser.add_argument("--image", default=os.path.join(shared, "media", "dog.jpg"))
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args()
    try:
        if args.check:
            edited = args.output
        else:
            model, notes = make_dynamic(onnx.load(args.input))
            for n in notes:
                print(n)
            model.producer_name = (model.producer_name or "") + " + make-dynamic-batch.py"
            edited = model.SerializeToString()
            io = [f"{v.name} [{', '.join(d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim)}]"
                  for v in list(model.graph.input) + list(model.graph.output)]
            print(f"edited: {', '.join(io)}; shape inference and checker passed")
        print(f"check: {args.output if args.check else 'the edited model'} at batch {CHECK_BATCH} against "
              f"{args.input} at batch 1, onnxruntime CPU, images from {args.image}")
        ok = check(args.input, edited, args.image, args.tolerance)
    except (EditError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError, OSError) as e:
        print(f"make-dynamic-batch: {e}", file=sys.stderr)
        return 1
    if ok and not args.check:
        # Written only once checked: a file at OUT is a model that passed.
        with open(args.output, "wb") as f:
            f.write(edited)
        print(f"written: {args.output}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

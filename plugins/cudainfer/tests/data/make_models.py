"""Generates the tiny ONNX models the error tests use (committed; rerun to
regenerate): `pip install onnx && python3 make_models.py`."""
import os
import onnx
from onnx import TensorProto, helper

here = os.path.dirname(os.path.abspath(__file__))


def identity_model(name, shape):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output"])],
        name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(here, name + ".onnx"))


# A one-channel image input: does not fit the yolox preset's [N, 3, H, W].
identity_model("gray_input", [1, 1, 64, 64])

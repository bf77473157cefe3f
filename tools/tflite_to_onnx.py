"""Convert MediaPipe's legacy face-mesh model (face_landmark.tflite) to ONNX, and check it against LiteRT.

Why a hand-written converter: mediapipe >= 0.10.30 ships no model files and its Tasks FaceLandmarker cannot run
the legacy model, while tflite2onnx fails on it. The model only uses seven simple ops, so a ~200 line mapping onto
ONNX is easier to audit than a general converter. Run it in a side environment holding the pure-Python `tflite`
schema package, `ai-edge-litert` (reference interpreter), onnx, onnxruntime and numpy:

    /tmp/cv/bin/python tools/tflite_to_onnx.py /tmp/pk/mpm/face_landmark.tflite \
        streamdetect/faces/models/face_landmark.onnx [--faces crops.npy]

`--faces` takes an (K, 192, 192, 3) array of real, MediaPipe-style face crops (uint8 or float in [0, 1]) that are
validated in addition to the random inputs. The file is only written when every output matches LiteRT.

Layout: TFLite is NHWC; the ONNX graph transposes the input to NCHW once and stays NCHW throughout, so every
weight, padding and axis is converted here instead of with Transposes around each op. The batch dimension is left
symbolic (the graph has no batch-specific op) so several faces run in one call.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

MEDIAPIPE_VERSION = "0.10.21"
OUTPUT_NAMES = {"conv2d_21": "landmarks", "conv2d_31": "presence"}  # TFLite name -> ONNX name (flattened to (N, C))
NP_TYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
            tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64}
OPSET = 17


def op_names() -> dict[int, str]:
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


class Converter:
    def __init__(self, data: bytes):
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ValueError("expected a single-subgraph model")
        self.graph = self.model.Subgraphs(0)
        self.consts: dict[int, np.ndarray] = {}  # tensor index -> value (weights, folded DEQUANTIZE outputs)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    # -- tensors -----------------------------------------------------------------------------------------
    def name(self, t: int) -> str:
        return self.graph.Tensors(t).Name().decode()

    def shape(self, t: int) -> list[int]:
        return [int(v) for v in self.graph.Tensors(t).ShapeAsNumpy()]

    def buffer(self, t: int) -> np.ndarray | None:
        tensor = self.graph.Tensors(t)
        buf = self.model.Buffers(tensor.Buffer())
        offset = buf.Offset() if hasattr(buf, "Offset") else 0
        if offset > 1:  # large models keep buffers after the flatbuffer, addressed by offset/size
            raw = self.data[offset:offset + buf.Size()]
        elif buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
        else:
            return None
        return np.frombuffer(raw, dtype=NP_TYPES[tensor.Type()]).reshape(self.shape(t))

    def const(self, t: int) -> np.ndarray:
        if t not in self.consts:
            value = self.buffer(t)
            if value is None:
                raise ValueError(f"tensor {self.name(t)} is not a constant")
            self.consts[t] = value
        return self.consts[t]

    def initializer(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    # -- graph -------------------------------------------------------------------------------------------
    def convert(self) -> onnx.ModelProto:
        names = op_names()
        (inp,) = self.graph.InputsAsNumpy()
        _, h, w, c = self.shape(inp)
        # NHWC input -> NCHW once; every activation below is NCHW.
        self.act_names = {inp: self.name(inp) + "_nchw"}
        self.nodes.append(helper.make_node("Transpose", [self.name(inp)], [self.act_names[inp]], perm=[0, 3, 1, 2]))
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            handler = getattr(self, "op_" + kind.lower(), None)
            if handler is None:
                raise NotImplementedError(f"TFLite op {kind} is not supported by this converter")
            handler(op)
        outputs = []
        for t in self.graph.OutputsAsNumpy():
            out = OUTPUT_NAMES.get(self.name(t), self.name(t))
            # (N, C, 1, 1) -> (N, C); Flatten keeps the batch dimension symbolic.
            self.nodes.append(helper.make_node("Flatten", [self.act(t)], [out], axis=1))
            size = int(np.prod(self.shape(t)[1:]))
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", size]))
        graph = helper.make_graph(
            self.nodes, "face_landmark",
            [helper.make_tensor_value_info(self.name(inp), TensorProto.FLOAT, ["N", h, w, c])], outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="streamdetect tools/tflite_to_onnx.py")
        model.ir_version = 8  # the oldest IR that opset 17 allows: loads in every onnxruntime >= 1.17
        return model

    def act(self, t: int) -> str:
        """ONNX name of an activation tensor (NCHW); constants never flow through here."""
        return self.act_names[t]

    def emit(self, op_type: str, inputs: list[str], t_out: int, activation: int = 0, **attrs) -> None:
        """One ONNX node writing TFLite tensor t_out, followed by its fused activation, if any."""
        out = self.name(t_out)
        A = tflite.ActivationFunctionType
        post = {A.NONE: None, A.RELU: ("Relu", {}), A.RELU6: ("Clip", (0.0, 6.0)),
                A.RELU_N1_TO_1: ("Clip", (-1.0, 1.0)), A.TANH: ("Tanh", {})}
        if activation not in post:
            raise NotImplementedError(f"fused activation {activation} in {out}")
        final = out
        if post[activation] is not None:
            out = out + "_preact"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        if post[activation] is not None:
            kind, arg = post[activation]
            extra = []
            if kind == "Clip":
                extra = [self.initializer(f"{final}_{k}", np.float32(v)) for k, v in zip(("min", "max"), arg)]
            self.nodes.append(helper.make_node(kind, [out, *extra], [final], name=final))
        self.act_names[t_out] = final

    def same_pads(self, t_in: int, t_out: int, kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], padding: int) -> list[int]:
        """ONNX pads [top, left, bottom, right]. TFLite SAME puts the odd pixel at the end (bottom/right)."""
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        begin, end = [], []
        for size, k, s, d in zip(self.shape(t_in)[1:3], kernel, stride, dilation):
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            begin.append(total // 2)
            end.append(total - total // 2)
        return begin + end

    @staticmethod
    def options(op, cls):
        opts = cls()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts

    # -- ops ---------------------------------------------------------------------------------------------
    def op_dequantize(self, op) -> None:
        # fp16 weights -> fp32 initializers, folded at conversion time (ORT would do the same at load).
        (src,), (dst,) = op.InputsAsNumpy(), op.OutputsAsNumpy()
        self.consts[dst] = self.const(src).astype(np.float32)

    def _conv(self, op, weight: np.ndarray, opts, group: int) -> None:
        x, w_t, b_t = op.InputsAsNumpy()
        (y,) = op.OutputsAsNumpy()
        kernel, stride = weight.shape[2:], (opts.StrideH(), opts.StrideW())
        dilation = (opts.DilationHFactor(), opts.DilationWFactor())
        inputs = [self.act(x), self.initializer(self.name(y) + "_W", weight)]
        if b_t >= 0:
            inputs.append(self.initializer(self.name(y) + "_B", self.const(b_t).astype(np.float32)))
        pads = self.same_pads(x, y, kernel, stride, dilation, opts.Padding())
        self.emit("Conv", inputs, y, opts.FusedActivationFunction(), kernel_shape=list(kernel), strides=list(stride),
                  dilations=list(dilation), group=group, pads=pads)

    def op_conv_2d(self, op) -> None:
        w = self.const(op.InputsAsNumpy()[1]).transpose(0, 3, 1, 2)  # OHWI -> OIHW
        self._conv(op, w, self.options(op, tflite.Conv2DOptions), group=1)

    def op_depthwise_conv_2d(self, op) -> None:
        x, w_t = op.InputsAsNumpy()[:2]
        channels = self.shape(x)[3]
        w = self.const(w_t)[0].transpose(2, 0, 1)[:, None]  # 1HW(C*M) -> (C*M)1HW, one group per input channel
        self._conv(op, w, self.options(op, tflite.DepthwiseConv2DOptions), group=channels)

    def op_prelu(self, op) -> None:
        x, a_t = op.InputsAsNumpy()
        (y,) = op.OutputsAsNumpy()
        alpha = self.const(a_t).reshape(-1, 1, 1).astype(np.float32)  # (1,1,C) -> (C,1,1) broadcasts over NCHW
        self.emit("PRelu", [self.act(x), self.initializer(self.name(y) + "_alpha", alpha)], y)

    def op_add(self, op) -> None:
        a, b = op.InputsAsNumpy()
        (y,) = op.OutputsAsNumpy()
        opts = self.options(op, tflite.AddOptions)
        self.emit("Add", [self.act(a), self.act(b)], y, opts.FusedActivationFunction())

    def op_max_pool_2d(self, op) -> None:
        (x,), (y,) = op.InputsAsNumpy(), op.OutputsAsNumpy()
        o = self.options(op, tflite.Pool2DOptions)
        kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        # Padded cells never win in either runtime (TFLite ignores them, ONNX pads with -inf).
        self.emit("MaxPool", [self.act(x)], y, o.FusedActivationFunction(), kernel_shape=list(kernel),
                  strides=list(stride), pads=self.same_pads(x, y, kernel, stride, (1, 1), o.Padding()))

    def op_pad(self, op) -> None:
        x, p_t = op.InputsAsNumpy()
        (y,) = op.OutputsAsNumpy()
        p = self.const(p_t).astype(np.int64)[[0, 3, 1, 2]]  # NHWC rows -> NCHW rows of (before, after)
        # ONNX wants all begins, then all ends.
        pads = self.initializer(self.name(y) + "_pads", np.concatenate([p[:, 0], p[:, 1]]))
        self.emit("Pad", [self.act(x), pads], y, mode="constant")


# -- validation ------------------------------------------------------------------------------------------
def reference(tflite_path: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    """LiteRT outputs for each sample (its model has a fixed batch of 1), keyed by ONNX output name."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=tflite_path)
    interp.allocate_tensors()
    (inp,), outs = interp.get_input_details(), interp.get_output_details()
    result: dict[str, list[np.ndarray]] = {OUTPUT_NAMES.get(o["name"], o["name"]): [] for o in outs}
    for sample in batch:
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        for o in outs:
            result[OUTPUT_NAMES.get(o["name"], o["name"])].append(interp.get_tensor(o["index"]).reshape(-1))
    return {k: np.stack(v) for k, v in result.items()}


def validation_inputs(faces_path: str | None, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Uniform noise, smooth noise (closer to image statistics) and, if given, real face crops; all in [0, 1]."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    samples = [rng.random((h, w, c), dtype=np.float32) for _ in range(3)]
    for _ in range(3):  # 12x12 noise upsampled by repetition, then box-blurred: large smooth blobs
        coarse = np.repeat(np.repeat(rng.random((h // 16, w // 16, c), dtype=np.float32), 16, 0), 16, 1)
        samples.append(sum(np.roll(coarse, (dy, dx), (0, 1)) for dy in range(-4, 5, 4) for dx in range(-4, 5, 4)) / 9)
    if faces_path:
        faces = np.load(faces_path)
        faces = faces.astype(np.float32) / 255 if faces.dtype == np.uint8 else faces.astype(np.float32)
        samples.extend(faces)
    return np.stack(samples).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tflite")
    parser.add_argument("onnx")
    parser.add_argument("--faces", help="(K,192,192,3) .npy of real face crops to validate on as well")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="max |onnx - litert| allowed, relative to the largest |litert| value of that output")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    data = open(args.tflite, "rb").read()
    model = Converter(data).convert()
    model.doc_string = (f"MediaPipe face mesh (468 landmarks), converted from face_landmark.tflite of mediapipe=="
                        f"{MEDIAPIPE_VERSION} by tools/tflite_to_onnx.py. (c) Google LLC, Apache License 2.0. "
                        "Input: (N,192,192,3) RGB float in [0,1]. Outputs: landmarks (N,1404) = 468 x (x,y,z) in "
                        "input pixels; presence (N,1) face-presence logit (apply sigmoid).")
    onnx.helper.set_model_props(model, {"source": "mediapipe/modules/face_landmark/face_landmark.tflite",
                                        "mediapipe_version": MEDIAPIPE_VERSION, "license": "Apache-2.0",
                                        "copyright": "Google LLC"})
    onnx.checker.check_model(model, full_check=True)

    (inp,) = model.graph.input
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    batch = validation_inputs(args.faces, shape)
    ref = reference(args.tflite, batch)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    # The whole batch in one call: this also checks the symbolic batch dimension.
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {inp.name: batch})))
    ok = True
    for name, expected in ref.items():
        diff = float(np.abs(got[name] - expected).max())
        scale = float(np.abs(expected).max())
        passed = diff <= args.rtol * max(scale, 1.0)
        ok &= passed
        print(f"{name}: {len(batch)} inputs, max |onnx - litert| = {diff:.3g} (max |litert| = {scale:.3g}, "
              f"relative {diff / max(scale, 1e-12):.2g}) {'ok' if passed else 'FAIL'}")
    if not ok:
        print("not written: outputs differ from LiteRT beyond tolerance", file=sys.stderr)
        return 1
    onnx.save(model, args.onnx)
    print(f"wrote {args.onnx}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

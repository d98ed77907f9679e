"""dlib's ResNet face recognition model, converted to ONNX and run on onnxruntime (batched, multi-core,
CUDA when present), with dlib's face chips made by OpenCV."""

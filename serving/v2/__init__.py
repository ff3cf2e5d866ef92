"""The Open Inference Protocol (KServe V2 REST), for the server and for clients alike. Pure: no
Ray, no HTTP server, no ONNX Runtime.

- `types`: datatypes, tensor metadata, `ProtocolError` and its HTTP statuses.
- `request`: decode and validate an infer request (JSON, or the JSON header of a binary one).
- `tensors`: one input tensor's shape and values, from JSON data or binary bytes.
- `response`: the outputs a request asks for, and the infer response.
- `wire`: bodies on the wire: content types, size limits, the binary tensor extension.
"""

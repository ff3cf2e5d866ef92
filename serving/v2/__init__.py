"""The Open Inference Protocol (KServe V2 REST), for the server and for clients alike. Pure: no
Ray, no HTTP server, no ONNX Runtime.

- `types`: datatypes, tensor metadata, `ProtocolError` and its HTTP statuses.
- `protocol`: parse and validate a JSON infer request, format responses.
- `wire`: bodies on the wire: content types, size limits, the binary tensor extension.
"""

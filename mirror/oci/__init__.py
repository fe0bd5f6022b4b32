"""The OCI data model, free of I/O: digests, media types, descriptors and manifests (exact
bytes kept), platforms, and the reference strings that name images."""

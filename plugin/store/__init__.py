"""Vector storage: the store protocol and shared base, Qdrant server / local mode, Qdrant Edge."""

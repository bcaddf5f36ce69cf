"""The retrieval service: per-tenant knowledge bases of chunked documents and passage search.
The core (:mod:`aigc_retrieval.core`) has no gRPC; indexes sit behind :mod:`aigc_retrieval.ports`."""

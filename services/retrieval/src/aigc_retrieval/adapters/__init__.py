"""Concrete indexes behind :class:`aigc_retrieval.ports.DocumentIndex`."""

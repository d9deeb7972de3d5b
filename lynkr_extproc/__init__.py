"""lynkr-extproc: an Envoy ext_proc service for LLM traffic."""

__version__ = "0.1.0"

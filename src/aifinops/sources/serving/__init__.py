"""Serving counters: vLLM, SGLang, TGI, Triton, KServe."""

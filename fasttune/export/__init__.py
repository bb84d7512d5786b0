"""Exporters: turn a trained model folder into files other tools run (GGUF for llama.cpp)."""

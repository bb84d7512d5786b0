"""The install: nothing compiled unless asked (llama.cpp is the `gguf` extra), and llama.cpp installed on
the first GGUF use where it is missing. pip itself is not run here (it would download and compile):
the test stands in for it and checks what fasttune asks of it."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_an_unknown_option_is_refused_before_anything_is_installed():
    done = subprocess.run(["bash", "scripts/install.sh", "--gpu-please"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option '--gpu-please' (--gguf, --dev)" in done.stderr
    assert "pip" not in done.stdout


def test_llama_cpp_is_an_extra_not_a_dependency():
    import importlib.metadata

    declared = importlib.metadata.requires("fasttune")
    plain = [r for r in declared if ";" not in r]
    assert not [r for r in plain if r.startswith("llama-cpp-python")]  # the default install compiles nothing
    assert any(r.startswith("llama-cpp-python") and 'extra == "gguf"' in r for r in declared)
    assert any(r.startswith("fasttune[gguf]") and 'extra == "dev"' in r for r in declared)  # the tests export GGUF


def test_the_first_gguf_use_installs_llama_cpp_saying_so(monkeypatch):
    import llama_cpp

    from fasttune import gguf_inference

    calls, said = [], []

    def pip(command, env):
        calls.append((command, env))
        monkeypatch.setitem(sys.modules, "llama_cpp", llama_cpp)  # what the install makes importable
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    monkeypatch.setattr(subprocess, "run", pip)
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    assert gguf_inference.runtime(said.append) is llama_cpp
    [(command, env)] = calls
    assert command == [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                       gguf_inference.requirement()]
    assert gguf_inference.requirement().startswith("llama-cpp-python") and "<0.4" in gguf_inference.requirement()
    assert env["CMAKE_ARGS"] == "-DGGML_NATIVE=OFF"  # a wheel that runs on any x86-64
    assert "compiling llama.cpp from source (minutes" in said[0] and "install.sh --gguf" in said[0]
    assert gguf_inference.runtime(said.append) is llama_cpp and len(calls) == 1  # installed once


def test_a_failed_install_says_what_it_needs(monkeypatch):
    import pytest

    from fasttune import gguf_inference
    from fasttune.errors import FasttuneError

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setattr(subprocess, "run", lambda command, env: subprocess.CompletedProcess(command, 1))
    with pytest.raises(FasttuneError, match="pip could not install llama-cpp-python.*a C\\+\\+ compiler and cmake"):
        gguf_inference.runtime(lambda text: None)

"""Export and chat, offline: adapter, merged and GGUF (f16, q8_0, q4_k_m) from the session's trained chat
run; the merged model matches the adapter model, llama.cpp's f16 answers match
transformers' token for token, and `fasttune chat` answers the same through every target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import first_rows, invoke, merge_peak

pytestmark = pytest.mark.e2e  # trains or converts the embedded model: minutes on CPU

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def run_dir(chat_run_hf):
    """The session's CHAT_RUN on the hf backend (tests/conftest.py)."""
    return chat_run_hf.path


def test_all_forms_are_written(chat_export):
    out, report = chat_export
    kinds = [(e["format"], e.get("quant")) for e in report["exports"]]
    assert kinds == [("adapter", None), ("merged", None), ("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_k_m")]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "merged" / "model.safetensors").is_file() and (out / "merged" / "chat_template.jinja").is_file()
    sizes = {e["quant"]: e["size_bytes"] for e in report["exports"] if e["format"] == "gguf"}
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f16"]
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_merged_matches_the_adapter_model(run_dir, chat_export):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune import models

    out, report = chat_export
    merged_info = next(e for e in report["exports"] if e["format"] == "merged")
    assert merged_info["dtype"] == "float16" and "original checkpoint" in merged_info["base_weights"]
    assert merged_info["merge"] == "streamed, one tensor at a time"
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(models.resolve(models.EMBEDDED), dtype=torch.float32)
    with torch.no_grad():
        adapter_logits = PeftModel.from_pretrained(base, run_dir / "adapter").eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
        merged_logits = merged(ids).logits
    # float16 storage rounds each weight by ~1e-3 relative; logits stay within a few hundredths
    assert (merged_logits - adapter_logits).abs().max() < 0.1
    assert torch.equal(merged_logits[0, -1].argmax(), adapter_logits[0, -1].argmax())


def test_the_merge_needs_little_ram_beside_its_imports(run_dir, tmp_path):
    """SmolLM2's checkpoint is one 538 MB float32 shard. The merge, in a process of its own, peaks within
    that shard plus 1 GiB, and rises over its imports by less than half the shard: the whole-model
    merge rose by more than the shard (a float32 model, then its 16-bit copy; 845 MB here)."""
    from fasttune import models

    shard = (Path(models.resolve(models.EMBEDDED)) / "model.safetensors").stat().st_size
    imports, peak = merge_peak(models.resolve(models.EMBEDDED), run_dir / "adapter", tmp_path / "merged")
    print(f"shard {shard / 2**20:.0f} MiB, imports {imports / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    assert peak <= shard + 2**30 and peak - imports < shard / 2


def test_f16_gguf_answers_exactly_like_the_merged_model(chat_export):
    _, report = chat_export
    f16 = next(e for e in report["exports"] if e.get("quant") == "f16")
    v = f16["verification"]
    assert v["exact_prompts"] == 2 and v["matched_tokens"] == v["total_tokens"] > 0
    for quant in ("q8_0", "q4_k_m"):
        q = next(e for e in report["exports"] if e.get("quant") == quant)["verification"]
        assert all(p["gguf_tokens"] > 0 for p in q["prompts"])  # loads and produces text


def test_modelfile_names_the_file_and_the_template(chat_export):
    out, _ = chat_export
    text = (out / "model-q4_k_m.Modelfile").read_text()
    assert "FROM ./model-q4_k_m.gguf" in text
    assert "<|im_start|>{{ .Role }}" in text and 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in text  # the template's default system turn


def test_every_gguf_prompts_the_model_as_training_did(chat_export):
    """export.json's template_conformance: each fixed conversation renders to training's token ids
    through the GGUF's own template (transformers' and llama-cpp-python's Jinja) and through the
    Modelfile (Ollama's Go template, with the Modelfile's SYSTEM where a conversation has none)."""
    _, report = chat_export
    for record in (e for e in report["exports"] if e["format"] == "gguf"):
        conformance = record["template_conformance"]
        assert conformance["problems"] == [], conformance["problems"]
        assert conformance["cases"] == ["system_prompt", "no_system_prompt", "multi_turn"]
        assert conformance["same_text"] == conformance["identical"] == conformance["compared"] == 9
        assert conformance["tokenizer_differences"] == []
        assert conformance["renderers"]["ollama"] == conformance["cases"]
        stop = conformance["stop"]
        assert stop["end_of_turn"]["text"] == "<|im_end|>" and stop["gguf_eos_id"] == stop["end_of_turn"]["id"]
        assert stop["llama_cpp_stops_on_it"] and stop["modelfile_stops_on_it"]


def test_a_modelfile_that_prompts_otherwise_fails_the_export_and_leaves_nothing(chat_export, run_dir, tmp_path,
                                                                                monkeypatch):
    """The Go template fasttune wrote before this check: `.System` before the messages, which Ollama
    also keeps in `.Messages`, so the system prompt came twice. The export now names the first
    differing token and removes the GGUF and its Modelfile."""
    from fasttune.errors import ExportError
    from fasttune.export import modelfile, pipeline
    from fasttune.run_folder import open_run

    monkeypatch.setattr(modelfile, "CHATML_TEMPLATE", "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n"
                        "{{ end }}" + modelfile.CHATML_TEMPLATE)
    out, _ = chat_export
    job = pipeline.Job(open_run(run_dir), tmp_path, ["f16"], verify_prompts=0, verify_tokens=8, say=print,
                       merged_dir=out / "merged", ledger=pipeline.Ledger(tmp_path, run_dir), scratch=tmp_path,
                       merge_info={})
    with pytest.raises(ExportError) as refused:
        pipeline.WRITERS["gguf"](job)
    said = str(refused.value)
    assert "case 'system_prompt': the ollama render differs from training's at token" in said, said
    assert "'text': 'user'}, ollama has {" in said and "'text': 'system'}" in said  # a second system turn
    assert not list(tmp_path.glob("model-*")), "the GGUF or its Modelfile was left behind"


def test_chat_answers_the_same_through_run_merged_and_gguf(run_dir, chat_export):
    out, _ = chat_export
    answers = {}
    for name, target in {"run": run_dir, "merged": out / "merged", "gguf": out / "model-f16.gguf"}.items():
        result = invoke("chat", str(target), "--prompt", PROMPT, "--max-new-tokens", "24")
        assert result.returncode == 0, result.stderr[-2000:]
        answers[name] = result.stdout.strip()
    assert answers["run"] and answers["run"] == answers["merged"] == answers["gguf"], answers


def test_chat_continue_extends_the_assistant_message(chat_export):
    out, _ = chat_export
    prefix = "Ahoy! The capital of France"
    result = invoke("chat", str(out / "merged"), "--prompt", PROMPT, "--continue", prefix, "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(prefix) and len(result.stdout.strip()) > len(prefix)


def test_export_refuses_bad_requests_without_writing(run_dir, chat_export, tmp_path):
    result = invoke("export", str(run_dir), "--to", "gguf", "--quant", "q3_xx")
    assert result.returncode == 2 and "unknown GGUF quantization q3_xx; valid: f16" in result.stderr
    result = invoke("export", str(run_dir), "--to", "merged")
    assert result.returncode == 2 and "exists; pass --force" in result.stderr
    fake = tmp_path / "classifier"
    shutil.copytree(run_dir, fake, ignore=shutil.ignore_patterns("export", "checkpoints"))
    config = json.loads((fake / "config.json").read_text())
    config["task"] = {"type": "Classification", "labels": ["a", "b"]}
    (fake / "config.json").write_text(json.dumps(config))
    result = invoke("export", str(fake), "--to", "gguf")
    assert result.returncode == 2 and "classification model cannot be exported to GGUF" in result.stderr
    assert not (fake / "export").exists()


def test_a_failed_export_leaves_the_trained_run_finished(tmp_path):
    """verify_tokens beyond the context the model was trained with (SmolLM2: 8192) makes the GGUF check
    fail after training."""
    runs, held_out = tmp_path / "runs", first_rows("recipes/data/chat_eval.jsonl", 2, tmp_path / "eval.jsonl")
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", "train.max_steps=1", "eval.samples=0",
                     f"data.eval={held_out}", "eval.drift=false", "log.report_to=[]", f"log.runs_dir={runs}", "export.formats=[gguf]", "export.verify_prompts=1",
                     "export.verify_tokens=9000")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [run_dir] = list(runs.iterdir())
    assert "training finished and its result is intact" in result.stderr and "but the export failed" in result.stderr
    assert f"fasttune export {run_dir} --to gguf --quant f16" in result.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["export"] == "failed" and "context" in status["export_error"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file() and (run_dir / "eval.json").is_file()
    assert not list((run_dir / "export").glob("*.gguf"))  # the file that failed its check is not left as if good


def test_classification_to_gguf_is_refused_before_training(tmp_path):
    result = invoke("run", "recipes/classification.py", "export.formats=[gguf]", f"log.runs_dir={tmp_path}")
    assert result.returncode == 2 and "export.formats: a classification model cannot be exported to GGUF" in result.stderr
    assert not list(tmp_path.iterdir())

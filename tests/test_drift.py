"""eval.drift (fasttune/drift.py): the tuned model against its base, the adapter switched off, on general
prompts. Fast tier on a tiny random Llama with the real SmolLM2 tokenizer; the e2e tests read the chat
run every session trains, and one run at a high learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fasttune import tasks
from fasttune.config import Eval
from fasttune.drift import PROMPTS, measure, p95, summary_line
from fasttune.drift_prompts import ARITHMETIC, CODE, EVERYDAY, LANGUAGES
from fasttune.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
FEW = PROMPTS[:6]


def _lora_model(vocab: int):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])).eval()


def _set_lora_b(model, scale: float) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * scale)


@pytest.fixture(scope="module")
def chat_tokenizer(tokenizer):
    tasks.ChatSFT().setup_tokenizer(tokenizer)
    return tokenizer


def test_an_untrained_adapter_changes_nothing_and_a_larger_change_drifts_further(chat_tokenizer):
    model = _lora_model(len(chat_tokenizer))
    cfg = Eval(batch_size=4)  # two batches, the second shorter
    untouched = measure(model, chat_tokenizer, tasks.ChatSFT(), cfg, FEW, max_new_tokens=4)
    assert untouched["kl_mean"] < 1e-6 and untouched["kl_p95"] < 1e-6 and untouched["answers_changed"] == 0
    assert untouched["prompts"] == len(FEW) and untouched["max_new_tokens"] == 4
    assert all(e["base"] == e["tuned"] for e in untouched["examples"]) and len(untouched["examples"]) == 3
    figures = []
    for scale in (0.05, 0.5):
        _set_lora_b(model, scale)
        figures.append(measure(model, chat_tokenizer, tasks.ChatSFT(), cfg, FEW, max_new_tokens=4))
    small, large = figures
    assert 0 < small["kl_mean"] < large["kl_mean"] and small["kl_p95"] <= large["kl_p95"]
    assert large["answers_changed"] >= small["answers_changed"]
    assert "changed on" in summary_line(large) and f"/{len(FEW)} prompts" in summary_line(large)


def test_a_model_without_an_adapter_is_skipped_with_its_reason(chat_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    plain = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    skipped = measure(plain, chat_tokenizer, tasks.ChatSFT(), Eval(), FEW)
    assert set(skipped) == {"skipped"} and "not a peft LoRA model" in skipped["skipped"]
    assert summary_line(skipped).startswith("General prompts not checked")
    from fasttune.evaluate import Evaluator

    assert Evaluator(tasks.ChatSFT(), [], Eval(drift=False)).drift(None, plain, chat_tokenizer) is None  # eval.drift=false


def test_the_general_prompts_and_the_95th_percentile():
    assert len(PROMPTS) == 50 and len(set(PROMPTS)) == 50
    kinds = (EVERYDAY, CODE, ARITHMETIC, LANGUAGES)
    assert [sum(p in kind for kind in kinds) for p in PROMPTS] == [1] * 50  # every prompt of one kind
    assert all(PROMPTS[i] in kinds[i] for i in range(4))  # eval.drift_prompts=4 asks one of each
    with pytest.raises(ConfigError, match="eval.drift_prompts must be between 1 and 50, got 51"):
        Eval(drift_prompts=51)
    import numpy as np

    for values in ([0.0, 10.0], [3.0, 1.0, 2.0, 7.5, 0.25], [0.4]):  # eval.drift_prompts=1 too
        assert p95(values) == pytest.approx(np.percentile(values, 95))
    data = "".join(path.read_text() for path in (ROOT / "recipes/data").glob("*.jsonl"))
    assert not any(p in data for p in PROMPTS)  # no recipe's data


@pytest.mark.e2e
def test_every_run_reports_drift_and_it_rises_with_the_learning_rate(chat_run_hf, tmp_path):
    from helpers import first_rows, invoke

    drift = json.loads((chat_run_hf.path / "eval.json").read_text())["drift"]
    assert set(drift) == {"kl_mean", "kl_p95", "answers_changed", "prompts", "max_new_tokens"}
    assert drift["prompts"] == 8 and drift["kl_mean"] > 0 and drift["kl_p95"] >= 0  # CHAT_RUN: 8 prompts
    assert f"General answers changed on {drift['answers_changed']}/8 prompts" in chat_run_hf.output
    samples = (chat_run_hf.path / "samples.md").read_text()
    assert "# General prompts" in samples and samples.count("- **base:**") == 3
    held_out = first_rows("recipes/data/chat_eval.jsonl", 4, tmp_path / "eval.jsonl")
    lr = json.loads((chat_run_hf.path / "config.json").read_text())["train"]["lr"]
    # ten times the learning rate, for the same 8 updates, each from half the rows (batch 2, not 4): less
    # data rather than more, so a higher figure is the learning rate's doing
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", "model.dtype=float32", "train.max_steps=8",
                    f"train.lr={lr * 10}", "train.batch_size=2", "train.warmup_ratio=0", "eval.samples=0",
                    "eval.max_new_tokens=8", "eval.drift_prompts=8", "log.report_to=[]", f"data.eval={held_out}",
                    f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:]
    [run] = list((tmp_path / "runs").iterdir())
    high = json.loads((run / "eval.json").read_text())["drift"]
    assert high["kl_mean"] > 2 * drift["kl_mean"] and high["answers_changed"] >= drift["answers_changed"]


@pytest.mark.e2e
def test_the_reloaded_run_gives_its_figure_and_an_untrained_adapter_on_the_demo_gives_zero(chat_run_hf):
    from fasttune.recipe import Recipe
    from fasttune.run_folder import open_run

    run = open_run(chat_run_hf.path)
    model, tokenizer = run.load_model(say=lambda *_: None)
    recipe = Recipe.from_dict(run.config)
    recorded = json.loads((run.path / "eval.json").read_text())["drift"]
    again = measure(model, tokenizer, recipe.task, recipe.eval, PROMPTS[:recorded["prompts"]])
    assert again["kl_mean"] == pytest.approx(recorded["kl_mean"], rel=1e-3, abs=1e-5)
    assert again["answers_changed"] == recorded["answers_changed"]
    _set_lora_b(model, 0.0)  # the adapter as it was before training
    untrained = measure(model, tokenizer, recipe.task, recipe.eval, PROMPTS[:4])
    assert untrained["kl_mean"] < 1e-6 and untrained["answers_changed"] == 0

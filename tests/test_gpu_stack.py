"""What of the GPU path can be proven without a GPU: the install profiles and which one is chosen,
the warning when Unsloth runs outside the stack it declares, fasttune's own token count on real
TRL batches (padded and packed), and label scoring without a reusable KV cache (Unsloth's CUDA
forward returns none). The CUDA flag is the only thing faked; versions and metadata are real."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tomllib
import torch
from packaging.requirements import Requirement

from fasttune import profiles
from fasttune.chat_template import IGNORE
from fasttune.tasks import ChatSFT
from helpers import ROOT


def test_profile_follows_cuda_and_install_script_asks_it():
    assert profiles.choose(cuda=True) == "gpu" and profiles.choose(cuda=False) == "cpu"
    chosen = subprocess.run([sys.executable, "fasttune/profiles.py", "choose"], cwd=ROOT, capture_output=True, text=True)
    assert chosen.stdout.strip() == "cpu"  # this machine has no GPU
    script = (ROOT / "scripts/install.sh").read_text()
    assert "python fasttune/profiles.py choose" in script and 'requirements/$PROFILE.txt' in script


def test_installed_profile_is_named_and_a_mismatch_is_explained(tmp_path):
    profile, detail = profiles.installed_profile()
    assert profile == "cpu", detail  # what scripts/install.sh installs here
    (tmp_path / "cpu.txt").write_text("transformers==0.0.1  # no such install\n")
    (tmp_path / "gpu.txt").write_text("trl==0.0.2\n")
    profile, detail = profiles.installed_profile(tmp_path)
    assert profile is None
    assert f"transformers {profiles.version('transformers')} (pinned 0.0.1)" in detail
    assert f"trl {profiles.version('trl')} (pinned 0.0.2)" in detail


def test_gpu_profile_is_the_stack_unsloth_declares_and_cpu_profile_is_not():
    declared = profiles.unsloth_declared()
    assert set(declared) == {"transformers", "trl"}
    gpu, cpu = profiles.pins("gpu"), profiles.pins("cpu")
    for name, spec in declared.items():
        assert spec.contains(gpu[name]), (name, gpu[name], spec)
    assert not declared["transformers"].contains(cpu["transformers"])


def test_pyproject_ranges_admit_both_profiles():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ranges = {Requirement(r).name: Requirement(r).specifier for r in config["project"]["dependencies"]}
    for profile in profiles.PROFILES:
        for name, pinned in profiles.pins(profile).items():
            if name in ranges:
                assert ranges[name].contains(pinned), (profile, name, pinned, ranges[name])
    # resuming loads optimizer.pt and rng_state.pth with torch.load, which reads weights only from 2.6 on
    assert not ranges["torch"].contains("2.5.1") and ranges["torch"].contains("2.6.0")


def test_stack_warning_on_cuda_only_and_once():
    assert profiles.unsloth_stack_warning(cuda=False) is None
    message = profiles.unsloth_stack_warning(cuda=True)  # this install has transformers 5.23, Unsloth declares <=5.17
    assert f"transformers {profiles.version('transformers')}" in message and "<=5.17.0" in message
    assert "memory savings" in message and "bash scripts/install.sh" in message
    said = []
    profiles.warn_unsloth_stack_once(True, said.append)
    profiles.warn_unsloth_stack_once(True, said.append)
    assert len(said) <= 1  # once per process (an earlier test in this process may have used it up)


ROWS = [{"messages": [{"role": "user", "content": f"Question number {i}: {'why ' * (i % 5)}?"},
                      {"role": "assistant", "content": f"Ahoy! Answer {i}{' and more' * (i % 3)}. Arr!"}]}
        for i in range(8)]


@pytest.mark.parametrize("packing", ["off", "on"])
def test_token_count_matches_the_data_on_real_trl_batches(tokenizer, tmp_path, packing):
    """One epoch through TRL's SFTTrainer (padded, or packed padding-free) sees every token of
    every row once: fasttune's count must equal the totals of the tokenized data."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from fasttune.config import Data, Log, Train
    from fasttune.recipe import Recipe
    from fasttune.trainer.build import RunHooks, build_sft_trainer
    from fasttune.trainer.throughput import TokenCounter

    task = ChatSFT()
    rows = [task.tokenize(r, tokenizer, 512) for r in ROWS]
    dataset = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    recipe = Recipe(task=task, data=Data("unused.jsonl", max_seq_length=512),
                    train=Train(epochs=1, batch_size=3, packing=packing, warmup_ratio=0.0),
                    log=Log(report_to=[], runs_dir=str(tmp_path)))
    counter = TokenCounter(task.count_tokens)
    trainer = build_sft_trainer(recipe, model, tokenizer, dataset, None, RunHooks(tmp_path, "count", tokens=counter))
    trainer.train()
    assert counter.seen == sum(len(r["input_ids"]) for r in rows)
    assert counter.trained == sum(sum(t != IGNORE for t in r["labels"]) for r in rows)
    trainer.evaluate(dataset)  # evaluation batches are not training tokens
    assert counter.seen == sum(len(r["input_ids"]) for r in rows)


def test_label_scoring_without_a_shared_cache_gives_the_same_probabilities(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from fasttune.label_scoring import label_probabilities

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    prompts = [[{"role": "user", "content": "Classify: wake me at seven"}], [{"role": "user", "content": "play jazz"}]]
    labels = ["set_alarm", "play_music", "set_timer"]
    shared = label_probabilities(model, tokenizer, prompts, labels, share_prefix=True)
    full = label_probabilities(model, tokenizer, prompts, labels, share_prefix=False)
    torch.testing.assert_close(torch.tensor(shared), torch.tensor(full), atol=1e-5, rtol=1e-4)
    assert all(abs(sum(p) - 1) < 1e-5 for p in full)

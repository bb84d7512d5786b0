"""`fasttune plan` and the `auto` sizes: the memory estimate against the peaks measured on an H100
(benchmarks/results/gpu-*.json), shapes read from configs without weights, and auto resolution."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from click.testing import CliRunner

from fasttune import memory, plan
from fasttune.check import inspect, longest_row
from fasttune.cli import main
from fasttune.errors import ConfigError
from fasttune.recipe import apply_overrides, load_recipe
from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu  # noqa: E402  (benchmarks/ is scripts, not a package)

# The 8B shape the GPU benchmark measured: Llama-3.1-8B's dimensions with the embedded tokenizer
# (../shared/gpu/make_models.py "8b"), and the real Llama-3.1-8B config.json's dimensions.
SHAPE_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "intermediate_size": 14336, "vocab_size": 49152, "tie_word_embeddings": False,
            "max_position_embeddings": 131072}
LLAMA_31_8B = {**SHAPE_8B, "vocab_size": 128256, "head_dim": 128, "architectures": ["LlamaForCausalLM"]}


def model_folder(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def shape_config(name: str) -> dict:
    """The config make_models builds for a benchmark shape (benchmarks/gpu.py SHAPES), vocab of the embedded tokenizer."""
    hidden, layers, heads, kv_heads, intermediate, tied = gpu.SHAPES[name]
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "intermediate_size": intermediate, "vocab_size": 49152,
            "tie_word_embeddings": tied, "max_position_embeddings": 32768}


def measured_runs() -> list[dict]:
    runs = []
    for path in sorted((ROOT / "benchmarks" / "results").glob("gpu-2*.json")):
        runs += [r for r in json.loads(path.read_text())["results"] if r["peak_gib"]]
    return runs


def test_estimate_is_within_20_percent_of_every_measured_gpu_peak(tmp_path):
    """The 8B points (H100) calibrated the model; the 1B points (H200) were predicted before they were measured."""
    runs = measured_runs()
    assert {(r["shape"], r["seq"], r["batch"], r["backend"]) for r in runs} >= {
        ("8b", 2048, 2, "unsloth"), ("8b", 2048, 2, "hf"), ("8b", 16384, 1, "unsloth"), ("8b", 16384, 1, "hf"),
        ("1b", 2048, 2, "unsloth"), ("1b", 2048, 2, "hf"), ("1b", 8192, 1, "unsloth"), ("1b", 8192, 1, "hf")}
    args = Namespace(models_dir=tmp_path, overrides=[])
    assert SHAPE_8B.items() >= {k: v for k, v in shape_config("8b").items() if k != "max_position_embeddings"}.items()
    for run in runs:  # the benchmark's own command line, so the recipe is exactly the measured one
        folder = model_folder(tmp_path / run["shape"], shape_config(run["shape"]))
        cmd = gpu.command(run, args, str(tmp_path / "runs"))
        overrides = [a for a in cmd[cmd.index(f"recipes/{run['recipe']}.py") + 1:]
                     if not a.startswith("model.name=")] + [f"model.name={folder}"]
        recipe = apply_overrides(load_recipe(ROOT / "recipes" / f"{run['recipe']}.py"), overrides)
        shape = memory.Shape.from_config(plan.model_config(recipe.model.name), run["shape"])
        estimate = plan.peak(recipe, shape, run["backend"], run["seq"], run["batch"]).total / memory.GIB
        assert abs(estimate / run["peak_gib"] - 1) <= 0.20, (run, estimate)


def test_estimate_without_checkpointing_against_the_135m_chat_runs_on_a_gpu():
    """benchmarks/throughput.py on an H200 (chat_sft as shipped: packed 4 x 256, no checkpointing), after the
    recipe's gradient_checkpointing=false reached TRL. The HF point fixed the saved tensors' dtype on HF QLoRA
    (fp32, the residual stream's), so it is a fitted point, not an independent one."""
    runs = json.loads((ROOT / "benchmarks/results/throughput-20261126-024234.json").read_text())["results"]
    shape = memory.Shape.from_config(plan.model_config("smollm2-135m-instruct"), "embedded")
    recipe = apply_overrides(load_recipe(ROOT / "recipes" / "chat_sft.py"), ["train.gradient_checkpointing=false"])
    for run in (r for r in runs if r["backend"] in ("unsloth", "hf")):
        estimate = plan.peak(recipe, shape, run["backend"], recipe.data.max_seq_length, recipe.train.batch_size)
        assert abs(estimate.total / memory.GIB / run["peak_gpu_gib"] - 1) <= 0.20, (run["backend"], estimate)


def test_estimate_against_the_135m_runs_measured_on_the_gpu():
    """Rows that fill their micro-batch (packed chat and pre-training rows) are within 20%; rows shorter than
    max_seq_length use less than planned, never more than 20% beyond it. These runs had checkpointing on
    although the recipes say off (TRL's default overrode them then; fixed), so they are compared with the
    estimate for the recipe as written and only bound it from below."""
    runs = json.loads((ROOT / "benchmarks/results/gpu-recipes-20261125-155800.json").read_text())["runs"]
    shape = memory.Shape.from_config(plan.model_config("smollm2-135m-instruct"), "embedded")
    for name, run in runs.items():
        # as the recipes were written then: checkpointing off
        recipe = apply_overrides(load_recipe(ROOT / "recipes" / f"{name.removesuffix('_hf')}.py"),
                                 ["train.gradient_checkpointing=false"])
        backend = "hf" if name.endswith("_hf") else "unsloth"
        estimate = plan.peak(recipe, shape, backend, recipe.data.max_seq_length, recipe.train.batch_size)
        ratio = estimate.total / memory.GIB / run["train_peak_gpu_memory_gib"]
        assert ratio >= 0.8, (name, ratio)
        if name in ("chat_sft", "continued_pretraining"):
            assert ratio <= 1.2, (name, ratio)


def test_embedded_shape_comes_from_the_gguf_header_and_counts_every_weight():
    from gguf import GGUFReader

    from fasttune import models

    shape = memory.Shape.from_config(plan.model_config(models.EMBEDDED), models.EMBEDDED)
    reader = GGUFReader(models.shipped_gguf())
    assert shape.params() == sum(int(t.n_elements) for t in reader.tensors)  # every tensor in the file
    assert (shape.hidden, shape.layers, shape.vocab, shape.tied, shape.context) == (576, 30, 49152, True, 8192)


def test_plan_for_llama_31_8b_on_a_16gb_card(tmp_path):
    folder = model_folder(tmp_path, LLAMA_31_8B)
    result = CliRunner().invoke(main, ["plan", "recipes/chat_sft.py", f"model.name={folder}", "--gpu", "16GB",
                                       "train.gradient_checkpointing=true", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["params"] == 8_030_261_248  # Llama-3.1-8B's published parameter count
    [card] = report["cards"]
    assert card["gpu_gib"] == 16 and card["fits"] is True
    recipe = apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"),
                             [f"model.name={folder}", "train.gradient_checkpointing=true"])
    shape = memory.Shape.from_config(LLAMA_31_8B, "llama")

    def gib(seq, batch):
        return plan.peak(recipe, shape, report["backend"], seq, batch).total / memory.GIB

    # "largest" means it: the next size up does not fit
    batch, length, usable = card["largest_batch"], card["largest_max_seq_length"], card["usable_gib"]
    assert gib(256, batch) <= usable < gib(256, batch + 1)
    assert gib(length, 4) <= usable < gib(length + plan.LENGTH_STEP, 4)
    assert sum(v for k, v in report["peak_gib"].items() if k != "total") == pytest.approx(report["peak_gib"]["total"],
                                                                                          abs=0.03)


def test_offloaded_checkpoints_are_counted_in_cpu_memory_and_warned_past_this_machine(tmp_path):
    """Unsloth keeps each layer's 16-bit input per token in CPU memory: 32 x 4096 x 2 bytes = 256 KiB a token
    at the 8B shape. At 40,960 tokens that is 10 GiB, which fits this machine; at 131,072 (32 GiB) it does not."""
    folder = model_folder(tmp_path, LLAMA_31_8B)
    reports = {}
    for seq in (40960, 131072):
        result = CliRunner().invoke(main, ["plan", "recipes/chat_sft.py", f"model.name={folder}", "--gpu", "80GB",
                                           "model.backend=unsloth", "train.gradient_checkpointing=true",
                                           f"data.max_seq_length={seq}", "train.batch_size=1", "--json"])
        assert result.exit_code == 0, result.output
        reports[seq] = json.loads(result.output)
    assert reports[40960]["host_gib"] == pytest.approx(40960 * 256 / 2**20, abs=0.01)
    ram = plan.machine_ram_gib()
    assert reports[40960]["machine_ram_gib"] == ram and 13 < ram < 32  # this machine: 24 GiB
    assert reports[40960]["host_warning"] is None
    assert "need about 32.0 GiB of CPU memory" in reports[131072]["host_warning"]
    hf = CliRunner().invoke(main, ["plan", "recipes/chat_sft.py", f"model.name={folder}", "model.backend=hf",
                                   "train.gradient_checkpointing=true", "--json"])
    assert json.loads(hf.output)["host_gib"] == 0  # the HF backend keeps its checkpoints on the GPU


def test_plan_without_a_gpu_prints_a_table_of_cards():
    result = CliRunner().invoke(main, ["plan", "recipes/continued_pretraining.py"])
    assert result.exit_code == 0, result.output
    for card in plan.CARDS_GIB:
        assert f"{card:>3} GB" in result.output
    assert "LoRA + optimizer" in result.output and "logits" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["model.name=/no/such/folder"], "no such model folder /no/such/folder"),
    (["--gpu", "lots"], "--gpu: expected a memory size"),
])
def test_plan_refuses_clearly(args, message):
    result = CliRunner().invoke(main, ["plan", "recipes/chat_sft.py", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_hub_model_without_network_fails_clearly():
    result = run_cli("plan", "recipes/chat_sft.py", "model.name=nobody/no-such-model", "--gpu", "16",
                     env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and "could not load model 'nobody/no-such-model'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_mixture_of_experts_is_refused_not_misestimated(tmp_path):
    folder = model_folder(tmp_path, {**SHAPE_8B, "num_local_experts": 8})
    with pytest.raises(ConfigError, match="mixture-of-experts"):
        memory.Shape.from_config(plan.model_config(str(folder)), str(folder))


def test_config_missing_a_dimension_is_named(tmp_path):
    folder = model_folder(tmp_path, {k: v for k, v in SHAPE_8B.items() if k != "intermediate_size"})
    with pytest.raises(ConfigError, match="config has no intermediate_size"):
        memory.Shape.from_config(plan.model_config(str(folder)), str(folder))


def test_auto_on_cpu_is_the_longest_row_and_batch_4(tokenizer):
    recipe = apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"),
                             ["data.max_seq_length=auto", "train.batch_size=auto"])
    report = inspect(recipe, say=lambda message: None)  # `fasttune check` resolves auto as a run does
    from fasttune.data.load import load_splits

    train_rows, _ = load_splits(recipe.data, recipe.task.check_row, recipe.train.seed)
    longest = longest_row(recipe.task, train_rows, tokenizer)
    assert report["max_seq_length"] == -(-longest // 64) * 64 and report["splits"]["train"]["rows_cut"] == 0


def test_auto_on_a_gpu_takes_the_largest_batch_that_fits(monkeypatch):
    monkeypatch.setattr(plan, "detect_gpu", lambda: 8.0)  # the one thing this machine lacks: a GPU
    # checkpointing off as the recipe had it: with it on, batch 256 of the 135M model fits 8 GB
    recipe = apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"),
                             ["train.batch_size=auto", "train.gradient_checkpointing=false"])
    resolved = plan.resolve_auto(recipe, longest_row=lambda: 0, say=lambda message: None)
    shape = memory.Shape.from_config(plan.model_config(recipe.model.name), "embedded")
    usable, batch = plan.usable_gib(8.0), resolved.train.batch_size

    def gib(b):
        return plan.peak(recipe, shape, plan.backend_for(recipe), 256, b).total / memory.GIB

    assert gib(batch) <= usable < gib(batch + 1)
    monkeypatch.setattr(plan, "detect_gpu", lambda: 0.6)  # not even batch 1 fits
    with pytest.raises(ConfigError, match=r"batch size 1 at max_seq_length 256 needs about 0.\d GiB"):
        plan.resolve_auto(recipe, longest_row=lambda: 0, say=lambda message: None)

"""fasttune's own packed batches on CPU (fasttune/trainer/packing.py, fasttune/trainer/packed_attention.py;
tests/test_packing.py covers TRL's padding-free rows used on a GPU): examples laid end to end must not
see each other, so every token of a packed batch has to get the logits, loss and gradients it gets
when its example runs alone."""

from __future__ import annotations

import contextlib

import pytest
import torch

from fasttune.chat_template import IGNORE
from fasttune.trainer.packed_attention import NAME, packed_attention, packed_rows_attention
from fasttune.trainer.packing import PackedRowsCollator, pack_rows


def tiny(kind: str = "llama", **extra):
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM),
                                 "mistral": (MistralConfig, MistralForCausalLM)}[kind]
    config = config_class(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa", **extra)
    return model_class(config).train()  # as in training, where the config's use_cache stays on


def examples(lengths: list[int]) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for n in lengths:
        ids = torch.randint(1, 64, (n,), generator=generator).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * (n // 2) + ids[n // 2:]})
    return out


def packed_batch(rows: list[dict], max_length: int) -> tuple[list[dict], dict]:
    from datasets import Dataset

    packed = list(pack_rows(Dataset.from_list(rows), max_length))
    return packed, PackedRowsCollator()(packed)


def summed_loss(logits, labels):
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                             ignore_index=IGNORE, reduction="sum")


def check_each_example_as_alone(model, rows, batch, attention):
    """The packed batch's logits, summed loss and gradients against each example's own."""
    model.zero_grad()
    with attention:
        logits = model(**batch).logits  # the batch exactly as the Trainer passes it
        summed_loss(logits, batch["labels"]).backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    start, alone_loss = 0, 0.0
    order = batch["input_ids"][0].tolist()
    for ids in (order[i:i + n] for i, n in spans(batch["position_ids"][0])):
        example = next(e for e in rows if e["input_ids"] == ids)
        alone = model(input_ids=torch.tensor([ids])).logits
        torch.testing.assert_close(logits[0, start:start + len(ids)], alone[0].detach(), atol=1e-5, rtol=1e-4)
        assert batch["labels"][0, start] == IGNORE  # never predicted from the example before it
        loss = summed_loss(alone, torch.tensor([example["labels"]]))
        loss.backward()
        alone_loss += loss.item()
        start += len(ids)
    assert start == len(order) == sum(len(e["input_ids"]) for e in rows if len(e["input_ids"]) > 1)
    for packed, own in zip(packed_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(packed, own, atol=1e-5, rtol=1e-4)


def spans(positions):
    starts = [i for i, p in enumerate(positions.tolist()) if p == 0] + [len(positions)]
    return [(a, b - a) for a, b in zip(starts, starts[1:])]


@pytest.mark.parametrize("attention", ["transformers' sdpa", "fasttune's packed"])
def test_a_packed_batch_gives_each_example_its_own_logits_loss_and_gradients(attention):
    model = tiny()
    rows = examples([9, 5, 14, 7, 3, 11, 1])  # the one-token example carries no loss and is left out
    packed, batch = packed_batch(rows, max_length=24)
    assert 1 < len(packed) < len(rows) - 1  # rows really were shared, and then laid end to end
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    assert model.config.use_cache  # the default that would skip transformers' packed-sequence mask
    packed_attention_on = packed_rows_attention(model) if attention.startswith("fasttune") else contextlib.nullcontext()
    check_each_example_as_alone(model, rows, batch, packed_attention_on)
    assert model.config._attn_implementation == "sdpa"  # given back: generation keeps the model's own


def test_attention_sliding_window_shorter_than_the_batch_goes_to_sdpa_with_the_window():
    model = tiny("mistral", sliding_window=4)
    rows = examples([9, 6, 12])
    check_each_example_as_alone(model, rows, packed_batch(rows, max_length=30)[1], packed_rows_attention(model))


def test_attention_scores_keep_fp32_precision_where_bf16_logits_would_round():
    """Large attention logits close together (SmolLM2's first layers reach the hundreds; bf16 spaces
    its values 0.5 apart there): the packed attention's bf16 output and input gradients stay as close
    to the fp64 truth as PyTorch's own bf16 SDPA kernel. Scores rounded to bf16 miss it by ~3x."""
    torch.manual_seed(0)
    positions = torch.cat([torch.arange(n) for n in (40, 25, 31)])[None]
    shared = torch.randn(16, dtype=torch.float64) * 4  # every query meets every key with a logit of ~90 +- 6
    q = shared + torch.randn(1, 4, 96, 16, dtype=torch.float64)
    k, v = shared + torch.randn(1, 2, 96, 16, dtype=torch.float64), torch.randn(1, 2, 96, 16, dtype=torch.float64)
    grad_out = torch.randn(1, 96, 4, 16, dtype=torch.float64)
    example = (positions == 0).cumsum(-1)
    mask = (example[:, None, :, None] == example[:, None, None, :]) & torch.ones(96, 96, dtype=torch.bool).tril()

    def run(attend, dtype):
        inputs = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        out = attend(*inputs)
        (out.double() * grad_out).sum().backward()
        return [out.detach().double()] + [t.grad.double() for t in inputs]

    def sdpa(q, k, v):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return out.transpose(1, 2)

    def packed(q, k, v):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return packed_attention(None, q, k, v, None, scaling=0.25, position_ids=positions)[0]

    truth = run(lambda *t: sdpa(*t), torch.float64)
    torch.testing.assert_close(run(packed, torch.float32)[0], truth[0], atol=1e-4, rtol=1e-3)  # no bf16: fp32
    for ours, theirs, exact in zip(run(packed, torch.bfloat16), run(sdpa, torch.bfloat16), truth):
        assert (ours - exact).norm() <= 1.5 * (theirs - exact).norm()


def test_attention_refuses_a_kv_cache_and_restores_the_model_attention_after_an_error():
    model = tiny().eval()
    with torch.no_grad():
        cache = model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True).past_key_values
        with pytest.raises(ValueError, match="no KV cache"), packed_rows_attention(model):
            assert model.config._attn_implementation == NAME
            model(input_ids=torch.tensor([[4]]), past_key_values=cache, use_cache=True)
    assert model.config._attn_implementation == "sdpa"


def test_gradient_checkpointing_recomputes_with_the_same_attention(tokenizer, tmp_path):
    """Checkpointing recomputes each layer's forward inside the backward, after the loss is computed:
    the packed attention must still be on there, or the recomputed layers would differ from the ones
    saved. One training step with checkpointing ends at the same weights as one without."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from fasttune.config import Data, Log, Train
    from fasttune.recipe import Recipe
    from fasttune.tasks import ChatSFT
    from fasttune.trainer.build import RunHooks, build_sft_trainer

    rows = examples([9, 5, 14, 7, 3, 11, 8, 6])
    weights = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
        initial = torch.cat([p.detach().flatten() for p in model.parameters()])
        recipe = Recipe(task=ChatSFT(), data=Data("unused.jsonl", max_seq_length=24),
                        train=Train(max_steps=1, batch_size=2, packing="on", gradient_checkpointing=checkpointing,
                                    warmup_ratio=0.0, lr=1e-2),
                        log=Log(report_to=[], runs_dir=str(tmp_path)))
        trainer = build_sft_trainer(recipe, model, tokenizer, Dataset.from_list(rows), None, RunHooks(tmp_path, "gc"))
        # no LoRA layers: no fused LoRA
        assert [trick.name for trick in trainer.step_tricks] == ["packed rows attention", "labelled-positions LM head"]
        trainer.train()
        assert trainer.args.gradient_checkpointing == checkpointing
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert (weights[0] - initial).abs().max() > 1e-3  # the step did train
    torch.testing.assert_close(weights[1], weights[0], atol=1e-6, rtol=1e-5)


def test_every_token_of_a_packed_batch_counts_and_evaluation_batches_pack_too():
    from fasttune.trainer.throughput import count_lm_batch

    rows = examples([9, 5, 14, 7, 3, 11])
    _, batch = packed_batch(rows, max_length=20)
    assert count_lm_batch(batch) == (sum(len(e["input_ids"]) for e in rows),
                                     sum(sum(label != IGNORE for label in e["labels"][1:]) for e in rows))
    plain = PackedRowsCollator()(rows)  # evaluation batches: plain examples, each its own sequence
    assert [n for _, n in spans(plain["position_ids"][0])] == [9, 5, 14, 7, 3, 11]


@pytest.mark.parametrize("cuda, setting, mode", [(False, "auto", "off"), (False, "on", "rows"),
                                                 (True, "auto", "padding_free"), (False, "off", "off"),
                                                 (True, "off", "off")])
def test_packing_setting_picks_the_mode_for_the_device(monkeypatch, cuda, setting, mode):
    from fasttune.trainer.arguments import packing_mode

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)  # no GPU here: the one thing mocked
    assert packing_mode(setting) == mode

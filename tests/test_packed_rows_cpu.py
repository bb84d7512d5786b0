"""fasttune's own packed rows on CPU (fasttune/data/pack.py; tests/test_packing.py covers TRL's padding-free
rows used on a GPU): examples sharing a row must not see each other, so a packed row has to give every
token the logits it has when its example runs alone."""

from __future__ import annotations

import pytest
import torch

from fasttune.chat_template import IGNORE
from fasttune.data.pack import PackedRowsCollator, count_packed, pack_rows

PAD = 0


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    return LlamaForCausalLM(config).train()  # as in training, where the config's use_cache stays on


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
    return packed, PackedRowsCollator(PAD)(packed)


def test_a_packed_row_gives_each_example_its_own_logits_and_loss():
    model = tiny_llama()
    rows = examples([9, 5, 14, 7, 3, 11, 1])  # the one-token example carries no loss and is left out
    packed, batch = packed_batch(rows, max_length=24)
    assert len(packed) < len(rows) - 1  # rows really were shared
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape[0] == len(packed) and (batch["input_ids"][:, -1] == PAD).any()  # with padding

    assert model.config.use_cache  # the default that would skip the packed-sequence mask
    with torch.no_grad():
        logits = model(**batch).logits  # the batch exactly as the Trainer passes it
    seen = []
    for r, row in enumerate(packed):
        start = 0
        for length in row["seq_lengths"]:
            ids = row["input_ids"][start:start + length]
            with torch.no_grad():
                alone = model(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(logits[r, start:start + length], alone, atol=1e-5, rtol=1e-4)
            assert batch["labels"][r, start] == IGNORE  # never predicted from the example before it
            seen.append(ids)
            start += length
    assert sorted(map(tuple, seen)) == sorted(tuple(e["input_ids"]) for e in rows if len(e["input_ids"]) > 1)

    # The summed loss of the packed batch is the sum of the examples' own losses.
    def summed_loss(logits, labels):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                 ignore_index=IGNORE, reduction="sum")

    with torch.no_grad():
        alone = sum(summed_loss(model(input_ids=torch.tensor([e["input_ids"]])).logits, torch.tensor([e["labels"]]))
                    for e in rows)
    torch.testing.assert_close(summed_loss(logits, batch["labels"]), alone, atol=1e-4, rtol=1e-5)


def test_padding_is_not_counted_as_tokens():
    rows = examples([9, 5, 14, 7, 3, 11])
    packed, batch = packed_batch(rows, max_length=20)
    assert count_packed(batch["position_ids"]) == sum(len(e["input_ids"]) for e in rows)
    plain = PackedRowsCollator(PAD)(rows)  # evaluation batches: one example per row
    assert plain["position_ids"][1].tolist() == list(range(5)) + [0] * 9
    assert count_packed(plain["position_ids"]) == sum(len(e["input_ids"]) for e in rows)


@pytest.mark.parametrize("cuda, setting, mode", [(False, "auto", "off"), (False, "on", "rows"),
                                                 (True, "auto", "padding_free"), (False, "off", "off"),
                                                 (True, "off", "off")])
def test_packing_setting_picks_the_mode_for_the_device(monkeypatch, cuda, setting, mode):
    from fasttune.trainer import packing_mode

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)  # no GPU here: the one thing mocked
    assert packing_mode(setting) == mode

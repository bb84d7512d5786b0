"""Packing keeps examples apart: TRL's packer and padding-free collator, fed fasttune's tokenized
rows, restart position ids at each example, never carry a label across a boundary, and (on a tiny
random Llama with the real vocabulary) give each packed example the same logits it gets alone."""

from __future__ import annotations

import pytest
import torch

from fasttune.chat_template import IGNORE
from fasttune.tasks import ChatSFT

ROWS = [
    {"messages": [{"role": "user", "content": "What colour is the sky?"},
                  {"role": "assistant", "content": "Ahoy! The sky be blue. Arr!"}]},
    {"messages": [{"role": "user", "content": "How many legs has a spider?"},
                  {"role": "assistant", "content": "Ahoy! A spider has 8 legs. Arr!"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"},
                  {"role": "assistant", "content": "Ahoy! 4. Arr!"}]},
]


@pytest.fixture(scope="module")
def examples(tokenizer):
    task = ChatSFT()
    return [task.tokenize(row, tokenizer, 512) for row in ROWS]


@pytest.fixture(scope="module")
def packed_batch(examples, tokenizer):
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    dataset = Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples],
                                 "labels": [e["labels"] for e in examples]})
    total = sum(len(e["input_ids"]) for e in examples)
    packed = pack_dataset(dataset, seq_length=total, strategy="bfd")
    assert len(packed) == 1, "all three examples should fit one packed row"
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    return collator([packed[0]])


def segments(batch):
    """(start, end) of each packed example, read from where position ids restart at 0."""
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    return list(zip(starts, starts[1:]))


def test_position_ids_restart_at_each_example(packed_batch, examples):
    spans = segments(packed_batch)
    assert sorted(end - start for start, end in spans) == sorted(len(e["input_ids"]) for e in examples)
    pos = packed_batch["position_ids"][0]
    for start, end in spans:
        assert pos[start:end].tolist() == list(range(end - start))


def test_labels_stay_with_their_own_example(packed_batch, examples):
    ids, labels = packed_batch["input_ids"][0].tolist(), packed_batch["labels"][0].tolist()
    by_ids = {tuple(e["input_ids"]): e["labels"] for e in examples}
    for start, end in segments(packed_batch):
        own = by_ids[tuple(ids[start:end])]  # each segment is one whole example
        assert labels[start] == IGNORE  # nothing is predicted across the boundary into this example
        assert labels[start + 1:end] == own[1:]


def test_attention_does_not_cross_examples(packed_batch, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    model = LlamaForCausalLM(config).eval()
    ids, pos = packed_batch["input_ids"], packed_batch["position_ids"]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        for start, end in segments(packed_batch):
            alone = model(input_ids=ids[:, start:end], use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:end], alone, atol=1e-4, rtol=1e-4)

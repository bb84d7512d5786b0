"""The labelled-positions LM head (fasttune/trainer/labelled_head.py) against TRL's scoring of every
position on CPU: the same loss and the same LoRA gradients, through TRL's own fused head."""

from __future__ import annotations

import torch

from fasttune.trainer.labelled_head import labelled_positions_only


def test_scoring_only_labelled_positions_gives_trls_loss_and_gradients(monkeypatch):
    import transformers as tf
    import trl.trainer.utils as utils
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    config = tf.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config)
    add_fused_lm_head(model)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids = torch.randint(0, 512, (3, 40))
    labels = ids.clone()
    labels[:, :25] = -100  # a prompt, then the reply that carries the loss
    labels[1, 30:] = -100  # and padding

    scored = []  # rows the head projects: every position, or the labelled ones
    kernel = utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *rest: scored.append(hidden.shape[0]) or kernel(hidden, *rest))

    def step():
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True, use_cache=False)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return out, grads

    every, every_grads = step()
    with labelled_positions_only():
        labelled, labelled_grads = step()
    assert scored == [3 * 39, int((labels[:, 1:] != -100).sum())] == [117, 35]
    assert torch.allclose(labelled.loss, every.loss, atol=1e-6)
    assert torch.equal(labelled.label_mask, every.label_mask)
    assert torch.allclose(labelled.log_probs, every.log_probs, atol=1e-6)
    assert every_grads.keys() == labelled_grads.keys() and len(every_grads) == 8
    for name, grad in every_grads.items():
        assert grad.abs().max() > 0 and torch.allclose(labelled_grads[name], grad, atol=1e-6, rtol=1e-4), name


def test_the_trick_undoes_itself():
    import trl.trainer.utils as utils

    before = utils._use_triton
    with labelled_positions_only():
        assert utils._use_triton(torch.device("cpu"))
    assert utils._use_triton is before and not before(torch.device("cpu"))

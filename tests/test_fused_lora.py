"""fasttune/trainer/fused_lora.py: on CPU under bf16 autocast, a LoRA layer as one autograd function gives
peft's outputs and gradients (to bf16 rounding, measured against fp64), falls back to peft's forward
where it does not apply, and runs only inside the Trainer's steps."""

from __future__ import annotations

import pytest
import torch


def _peft_model(target_modules, **lora):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, mlp_bias=True))
    # B != 0, so the adapters count
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=target_modules,
                                           init_lora_weights=False, **lora))


def _loss_and_grads(model, batch, fused: bool):
    from fasttune.trainer.fused_lora import fused_lora_linears

    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=next(model.parameters()).dtype != torch.float64):
        if fused:
            with fused_lora_linears(model) as count:
                loss = model(**batch).loss
                loss.backward()
        else:
            count, loss = 0, model(**batch).loss
            loss.backward()
    grads = {n: p.grad.double().clone() for n, p in model.named_parameters() if p.grad is not None}
    return count, loss.item(), grads


def _error(grads, truth):
    return max(float((grads[n] - truth[n]).norm() / truth[n].norm()) for n in truth)


def test_fused_layers_give_peft_loss_and_gradients_to_bf16_rounding():
    import copy

    model = _peft_model(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    batch = {"input_ids": torch.randint(0, 64, (2, 24)), "labels": torch.randint(0, 64, (2, 24))}
    _, true_loss, truth = _loss_and_grads(copy.deepcopy(model).double(), batch, fused=False)
    model.base_model.model.to(torch.bfloat16)  # the base in bf16 as on Unsloth's CPU path; adapters stay fp32
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    _, peft_loss, peft_grads = _loss_and_grads(model, batch, fused=False)
    count, fused_loss, fused_grads = _loss_and_grads(model, batch, fused=True)

    assert count == 14  # 7 projections x 2 layers, the biased MLP ones included
    assert set(fused_grads) == set(truth) and all("lora_" in n for n in truth)
    assert abs(fused_loss - true_loss) <= 1.5 * abs(peft_loss - true_loss) + 2e-3
    assert _error(fused_grads, truth) <= 1.5 * _error(peft_grads, truth) + 1e-3
    assert _error(fused_grads, truth) < 0.12  # peft's own bf16 path: ~0.08 on this tiny model
    # and the forward is peft's again afterwards
    assert not any("forward" in vars(m) for m in model.modules())


@pytest.mark.parametrize("lora", [{"lora_dropout": 0.1}, {"use_dora": True}])
def test_layers_it_does_not_cover_keep_peft_forward(lora):
    from fasttune.trainer.fused_lora import fusable

    model = _peft_model(["q_proj", "v_proj"], **lora)
    layers = [m for m in model.modules() if hasattr(m, "lora_A")]
    assert layers and not any(fusable(m) for m in layers)
    batch = {"input_ids": torch.randint(0, 64, (2, 12)), "labels": torch.randint(0, 64, (2, 12))}
    model.eval()  # dropout off, so both passes compute the same
    assert _loss_and_grads(model, batch, fused=True)[:2] == _loss_and_grads(model, batch, fused=False)[:2]


def test_trainer_steps_run_fused_and_generation_keeps_peft(tmp_path):
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    from fasttune.trainer import fused_lora
    from fasttune.trainer.build import RunHooks, build

    model = _peft_model(["q_proj", "v_proj", "down_proj"])
    model.base_model.model.to(torch.bfloat16)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0}, "<pad>")),
                                        pad_token="<pad>", eos_token="<pad>")
    rows = [{"input_ids": list(range(1 + i, 20 + i)), "labels": list(range(1 + i, 20 + i))} for i in range(4)]
    # bf16 on CPU as Unsloth's CPU fallback sets it up (its trainer patch adds use_cpu; not imported here)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, max_steps=1, report_to="none")
    trainer = build(SFTTrainer, RunHooks(tmp_path, "fused"), model=model, args=args,
                    train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    assert [trick.name for trick in trainer.step_tricks] == ["fused LoRA", "labelled-positions LM head"]
    batch = trainer.data_collator(rows)

    calls = []
    function = fused_lora.lora_linear_function()
    original = function.apply

    def counted(*args):
        calls.append(args[0].shape)
        return original(*args)

    function.apply = counted
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused, _, _ = trainer.prediction_step(model, batch, prediction_loss_only=True)
            assert len(calls) == 6  # 3 adapted projections x 2 layers
            unfused, _, _ = SFTTrainer.prediction_step(trainer, model, batch, prediction_loss_only=True)
            assert len(calls) == 6  # the Trainer's own step, unwrapped, runs peft's forward
    finally:
        del function.apply  # back to the inherited classmethod
    assert abs(float(fused) - float(unfused)) < 0.02 * float(unfused)

    # Outside the Trainer (no autocast), fp32 adapters on bf16 activations need peft's forward and cast.
    assert not any("forward" in vars(m) for m in model.modules() if hasattr(m, "lora_A"))
    with torch.no_grad():
        assert model(input_ids=batch["input_ids"]).logits.isfinite().all()


def test_an_adapter_switched_off_inside_the_step_is_off_in_the_fused_layers_too():
    """DPO computes its reference with `disable_adapter()` inside a step: the fused layers must then be
    the base model's, as peft's are."""
    from fasttune.trainer.fused_lora import fused_lora_linears

    model = _peft_model(["q_proj", "v_proj"])
    ids = torch.randint(0, 64, (1, 12))
    with torch.no_grad():
        with model.disable_adapter():
            base = model(input_ids=ids).logits
        with fused_lora_linears(model) as count, model.disable_adapter():
            fused_off = model(input_ids=ids).logits
        with fused_lora_linears(model):
            fused_on = model(input_ids=ids).logits
    assert count == 4
    torch.testing.assert_close(fused_off, base)
    assert (fused_on - base).abs().max() > 1e-3  # the adapters (B != 0) do count when on

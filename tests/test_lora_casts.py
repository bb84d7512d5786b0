"""trainer.lora_without_input_casts: on CPU with bf16 weights, the training forward skips peft's cast of
each LoRA input to fp32 (autocast runs the adapter matmuls in bf16), gives the loss peft's cast gives,
and leaves generation outside the Trainer, which needs the cast, as it was."""

from __future__ import annotations

import torch


def test_training_forward_skips_lora_input_casts_and_keeps_the_loss(tmp_path):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    from fasttune.trainer import lora_without_input_casts

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2)).to(torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))  # B != 0, so the adapters count
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0}, "<pad>")),
                                        pad_token="<pad>", eos_token="<pad>")
    rows = [{"input_ids": list(range(1 + i, 20 + i)), "labels": list(range(1 + i, 20 + i))} for i in range(4)]
    # bf16 on CPU as Unsloth's CPU fallback sets it up (its trainer patch adds use_cpu; not imported here)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, max_steps=1, report_to="none")
    trainer = lora_without_input_casts(SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                                  processing_class=tokenizer))
    batch = trainer.data_collator(rows)

    casts = []
    original = BaseTunerLayer._cast_input_dtype

    def counted(self, x, dtype):
        out = original(self, x, dtype)
        casts.append(out is not x)
        return out

    BaseTunerLayer._cast_input_dtype = counted
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            skipped, _, _ = trainer.prediction_step(model, batch, prediction_loss_only=True)
            assert casts and not any(casts)  # every LoRA input went in as it was
            casts.clear()
            with_casts, _, _ = type(trainer).prediction_step(trainer, model, batch, prediction_loss_only=True)
            assert any(casts)  # the Trainer's own step, unwrapped
    finally:
        BaseTunerLayer._cast_input_dtype = original
    assert abs(float(skipped) - float(with_casts)) < 0.02 * float(with_casts)

    # Outside the Trainer (no autocast), fp32 adapters on bf16 activations still need peft's cast: it is back.
    assert all(getattr(m, "cast_input_dtype_enabled", True) for m in model.modules() if isinstance(m, BaseTunerLayer))
    with torch.no_grad():
        assert model(input_ids=batch["input_ids"]).logits.isfinite().all()

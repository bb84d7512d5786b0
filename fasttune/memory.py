"""The training peak of a LoRA run (or a full fine-tuning) on a GPU, estimated from the model's shape
alone (no weights loaded).

The peak is the sum of what the run holds at its worst moment, each term from the dtypes the backend
really uses:

- weights: the decoder's linear layers in 4-bit (bitsandbytes nf4 with double quantization, ~4.13
  bits a weight) or 16-bit; embeddings and lm_head in 16-bit, except on the HF backend's QLoRA path,
  where peft's `prepare_model_for_kbit_training` casts them to fp32;
- LoRA + optimizer: fp32 adapter weights, their gradients and AdamW's two moments (16 bytes each);
  a full fine-tuning instead holds a gradient and two AdamW moments for every weight, each in the
  weights' dtype (float32 by default: 16 bytes a parameter with the weight; 8 with 16-bit weights);
- activations: with gradient checkpointing, each layer's input (the HF backend keeps them on the GPU,
  in fp32 on its QLoRA path; Unsloth offloads them to CPU memory) plus one layer recomputed; without
  it, every layer's saved tensors;
- logits: one row per token over the vocabulary.

Beside the GPU peak, `host`: the CPU memory Unsloth's offloaded checkpoints take (each layer's input,
16-bit, per token: 256 KiB a token at the 8B shape, 10 GiB at 40k tokens), which a Colab's 12.7 GB
of RAM must also hold.

What differs between the backends each backend module declares as its `MEMORY` (a `BackendMemory`).
The per-token coefficients marked "fitted", here and there, are what the measured runs in
benchmarks/results/gpu-*.json (H100; 8B and 135M shapes) required; tests/test_plan.py holds the
estimate to those runs within 20%. They are a planning figure, not a promise: another stack
(transformers, Unsloth) moves them, and the allocator needs headroom on top (see `plan.usable_gib`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fasttune.errors import ConfigError

GIB = 1024**3
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + an 8-bit absmax per 64 + an fp32 scale per 256 blocks
LORA_BYTES = 16  # fp32 weight + fp32 gradient + AdamW's two fp32 moments, per trainable parameter


@dataclass(frozen=True)
class Shape:
    """A dense decoder's dimensions, as its config.json names them."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    context: int

    @classmethod
    def from_config(cls, config: dict, source: str) -> Shape:
        """Read a transformers config.json dict (a multimodal one's `text_config` too)."""
        config = config.get("text_config") or config
        experts = [config.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")]
        if any(isinstance(n, int) and n > 1 for n in experts):
            raise ConfigError(f"{source}: a mixture-of-experts model; this estimate covers dense decoders only")

        def need(*keys: str) -> int:
            for key in keys:
                if isinstance(config.get(key), int):
                    return config[key]
            raise ConfigError(f"{source}: config has no {' or '.join(keys)}, so its memory cannot be estimated")

        hidden, heads = need("hidden_size", "n_embd"), need("num_attention_heads", "n_head")
        return cls(
            hidden=hidden, layers=need("num_hidden_layers", "n_layer"), heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            intermediate=need("intermediate_size", "n_inner"), vocab=need("vocab_size"),
            tied=bool(config.get("tie_word_embeddings", False)),
            context=config.get("max_position_embeddings") or config.get("n_positions") or 2048,
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder block, by the names LoRA targets use."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears().values())

    def embedding_params(self) -> int:
        """embed_tokens, plus lm_head when it is not the same matrix."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def params(self) -> int:
        """All parameters: the linear layers, the embeddings and the RMSNorm weights."""
        return self.linear_params() + self.embedding_params() + self.hidden * (2 * self.layers + 1)


@dataclass(frozen=True)
class BackendMemory:
    """What a backend's own code does to the training peak: each backend module declares its `MEMORY`."""

    fp32_on_4bit: bool
    """On the 4-bit path embeddings, lm_head and the residual stream are fp32 (peft's
    `prepare_model_for_kbit_training` casts them); False: they stay 16-bit."""
    offloads_checkpoints: bool
    """Under gradient checkpointing the layer inputs go to CPU memory and a recomputed layer holds only
    its MLP's tensors (Unsloth's checkpointing); False: the inputs stay on the GPU, the layer is whole."""
    logit_bytes: int
    """Bytes per token and vocabulary entry at the loss (fitted)."""


@dataclass(frozen=True)
class Breakdown:
    """Bytes the training peak holds, by what holds them."""

    weights: float
    trained: float
    """The trained weights' own state: LoRA weights with gradients and AdamW moments, or in a full
    fine-tuning every weight's gradient and moments."""
    activations: float
    logits: float
    trained_label: str = "LoRA + optimizer"
    host: float = 0.0
    """CPU memory the run holds beside the GPU peak: Unsloth's offloaded layer inputs (not in `total`)."""

    @property
    def total(self) -> float:
        return self.weights + self.trained + self.activations + self.logits

    def gib(self) -> dict[str, float]:
        parts = {"weights": self.weights, self.trained_label: self.trained,
                 "activations": self.activations, "logits": self.logits, "total": self.total}
        return {name: value / GIB for name, value in parts.items()}


def layer_elements(shape: Shape, fused: bool) -> int:
    """Elements one decoder layer saves per token for its backward pass (flash/SDPA attention keeps no
    seq x seq matrix): the two norm outputs, q, the attention output and o's output (~6 x hidden), k and v,
    and the MLP's gate, up and their product (3 x intermediate). A layer that Unsloth recomputes under
    checkpointing holds about gate, up and the down projection's input (fitted)."""
    h, kv, i = shape.hidden, shape.kv_heads * shape.head_dim, shape.intermediate
    return 3 * i if fused else 6 * h + 2 * kv + 3 * i


def estimate(shape: Shape, *, backend: BackendMemory, load_in_4bit: bool, lora_r: int, targets: list[str],
             train_embeddings: bool, tokens: int, checkpointing: bool, full_weight_bytes: int = 0) -> Breakdown:
    """Training peak on a GPU for `tokens` tokens per micro-batch (batch_size x max_seq_length);
    `backend` is the training backend's MEMORY. `full_weight_bytes` (4 or 2) estimates a full
    fine-tuning with weights of that size instead of LoRA."""
    host = tokens * offloaded_bytes(shape, backend, checkpointing)
    if full_weight_bytes:
        b = full_weight_bytes  # weights, gradients, both AdamW moments and the residual stream in one dtype
        return Breakdown(weights=shape.params() * b, trained=shape.params() * 3 * b,
                         activations=tokens * activation_bytes(shape, backend, checkpointing, b),
                         logits=tokens * shape.vocab * backend.logit_bytes, trained_label="gradients + AdamW",
                         host=host)
    embed_bytes = 4 if backend.fp32_on_4bit and load_in_4bit else 2
    linears = shape.linears()
    unknown = sorted(set(targets) - set(linears))
    if unknown:
        raise ConfigError(f"model.lora.target_modules: {unknown} are not layers this estimate knows "
                          f"({', '.join(linears)})")
    weights = shape.linear_params() * (NF4_BYTES if load_in_4bit else 2) + shape.embedding_params() * embed_bytes
    trainable = shape.layers * sum(lora_r * (a + b) for name, (a, b) in linears.items() if name in targets)
    if train_embeddings:  # a trained copy of embed_tokens/lm_head beside the frozen one
        trainable += shape.embedding_params()
        weights += shape.embedding_params() * embed_bytes
    return Breakdown(weights=weights, trained=trainable * LORA_BYTES,
                     activations=tokens * activation_bytes(shape, backend, checkpointing, embed_bytes),
                     logits=tokens * shape.vocab * backend.logit_bytes, host=host)


def offloaded_bytes(shape: Shape, backend: BackendMemory, checkpointing: bool) -> int:
    """CPU bytes one token's offloaded checkpoints take: each layer's 16-bit input (Unsloth's offloaded
    gradient checkpointing), 0 where nothing is offloaded."""
    return shape.layers * shape.hidden * 2 if checkpointing and backend.offloads_checkpoints else 0


def activation_bytes(shape: Shape, backend: BackendMemory, checkpointing: bool, residual_bytes: int) -> int:
    """Bytes one token's activations hold for the backward pass; `residual_bytes`: the residual stream's
    dtype (fp32 on HF QLoRA and in a float32 full fine-tuning, else 16-bit)."""
    if checkpointing:  # layer inputs (Unsloth offloads them) + one layer recomputed
        kept = 0 if backend.offloads_checkpoints else residual_bytes
        return shape.layers * shape.hidden * kept + layer_elements(shape, fused=backend.offloads_checkpoints) * 2
    return shape.layers * layer_elements(shape, fused=False) * residual_bytes  # every layer's saved tensors

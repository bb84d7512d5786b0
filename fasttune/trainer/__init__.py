"""What happens inside a training step: everything between a task's datasets and TRL's training loop.

    arguments.py         recipe -> TrainingArguments every trainer shares; precision and packing by device
    build.py             the trainer a task builds: TRL's class with fasttune's step (RunHooks, build)
    tricks.py            StepTrick, what a speed trick declares, and TRICKS, the one list a step enters
    packing.py           fasttune's packed CPU batches: whole examples end to end, position ids restart
    packed_attention.py  a trick: attention over those batches, each example on its own
    fused_lora.py        a trick: LoRA layers as one autograd function under CPU bf16 autocast
    labelled_head.py     a trick: TRL's fused LM head over the labelled positions only, on CPU
    throughput.py        fasttune's count of training tokens, and the GPU memory peak

One step of fasttune's trainer: enter the context of every trick in TRICKS that applies to it ->
the trainer class's own training_step (TRL's, with Unsloth's patches when it is the backend) ->
compute_loss, where the micro-batch's tokens are counted -> backward (checkpointed forwards are
recomputed inside the same contexts) -> leave the contexts. Evaluation steps enter the same contexts.
Nothing here imports torch, transformers or trl at module level.
"""

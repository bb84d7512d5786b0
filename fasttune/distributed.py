"""Several processes (`accelerate launch`, `torchrun`): which process this is, and the rank-0 rule.

fasttune sets up no distributed training of its own. The launcher starts one process per device;
transformers' Trainer, through accelerate, wraps the model in DDP or FSDP (DeepSpeed) and gives each
process its share of every batch. What is fasttune's is that one run comes out of it:

- every process trains and computes the eval loss (the trainer's collectives need all of them);
- rank 0 alone creates the run folder (its path is sent to the others, which write per-rank RNG state
  into its checkpoints), writes files, prints, generates samples and computes the task metric;
- the numbers it writes are the job's: loss averaged over the processes (the Trainer gathers it),
  tokens summed over them (`total`).

Nothing here imports accelerate unless several processes run, so a one-process run keeps Unsloth
first in line.
"""

from __future__ import annotations

import os
import sys

LAUNCHED = "FASTTUNE_LAUNCHED"  # set by relaunch(), so the launched processes do not launch again


def launched() -> bool:
    """True in a process started by a launcher with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def on_cpu() -> bool:
    """Several processes and no GPU: accelerate then needs to be told (PartialState(cpu=True),
    TrainingArguments(use_cpu=True)), or each process would train alone, unaware of the others."""
    import torch

    return launched() and not torch.cuda.is_available()


def _state():
    from accelerate import PartialState  # the first call sets up the process group (gloo on CPU, nccl on CUDA)

    return PartialState(cpu=on_cpu())


def processes() -> int:
    return _state().num_processes if launched() else 1


def is_main() -> bool:
    """Rank 0 of the job (always true for one process): the one that writes, prints and generates.
    Read from RANK, which torchrun and `accelerate launch` set, so it can be asked before the backend
    is imported (accelerate's PartialState reads the same variable)."""
    return int(os.environ.get("RANK", "0")) == 0


def engine() -> str:
    """What the launcher asked accelerate for, read from the variables `accelerate launch` exports:
    'one process', 'DDP', 'FSDP1', 'FSDP2' or 'DeepSpeed' (torchrun alone means DDP)."""
    if not launched():
        return "one process"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP" + (os.environ.get("FSDP_VERSION") or "1")
    return "DDP"


def sharded() -> bool:
    """The weights are spread over the processes (FSDP, DeepSpeed ZeRO-3): every process then takes part
    in generating and in gathering the adapter to save. On CPU accelerate 1.15 runs such a launch as DDP
    (its FSDP and DeepSpeed plugins are built for GPUs only)."""
    return engine() in ("FSDP1", "FSDP2", "DeepSpeed") and not on_cpu()


def share(value):
    """Rank 0's `value`, on every process (the run folder's path, created by rank 0 only)."""
    if not launched():
        return value
    from accelerate.utils import broadcast_object_list

    _state()  # set up before accelerate's operations ask for it
    return broadcast_object_list([value])[0]


def total(*counts: int) -> list[int]:
    """Each count summed over the processes (tokens seen by the job, not by this process)."""
    if not launched():
        return list(counts)
    import torch
    from accelerate.utils import reduce

    summed = reduce(torch.tensor(counts, dtype=torch.long, device=_state().device), reduction="sum")
    return [int(c) for c in summed.tolist()]


def gather(value) -> list:
    """`value` from every process, in rank order (a list of one without a launcher)."""
    if not launched():
        return [value]
    from accelerate.utils import gather_object

    _state()
    return gather_object([value])


def weights_sha256(tensors: dict) -> str:
    """One digest of named tensors (their bytes, in name order): the same on two processes only if
    every value is bit-identical. Applied to each rank's trained LoRA weights, and to the saved adapter."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def let_training_wrap(model) -> None:
    """Undo what the 'before' evaluation did to `model`, so that `trainer.train()` wraps it in DDP.

    `Trainer.evaluate` before `train` prepares the model in accelerate's evaluation mode, which marks it
    prepared; since accelerate 1.15 (huggingface/accelerate#3977) `prepare_model` returns a model so
    marked as it is, so training starts without the DDP wrapper and each process trains its own copy,
    silently (tests/test_e2e_distributed.py caught it: the ranks' LoRA weights differed). Under FSDP and
    DeepSpeed the evaluation already wraps the model fully, and with one process there is nothing to wrap.
    """
    if launched() and not sharded():
        model._is_accelerate_prepared = False


def finish() -> None:
    """Close the process group at the end of a run (torch warns about one left open), once every process
    is there: rank 0 may still be generating its samples, and a process that closes the group and exits
    under it brings the job down."""
    if launched():
        state = _state()
        state.wait_for_everyone()
        state.destroy_process_group()


def relaunch(config_file: str, argv: list[str]) -> None:
    """Replace this process by `accelerate launch --config_file CONFIG_FILE -m fasttune.cli ARGV`: a
    recipe's train.accelerate_config starts the job it names without the user typing the launcher."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file,
               "-m", "fasttune.cli", *argv]
    os.environ[LAUNCHED] = "1"
    os.execv(sys.executable, command)


def should_relaunch(config_file: str) -> bool:
    return bool(config_file) and not launched() and not os.environ.get(LAUNCHED)

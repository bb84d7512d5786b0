"""Stopping a training run early without losing it.

- Ctrl-C or SIGTERM (a Colab stop, `kill`) during training asks the trainer to stop after the step
  it is in and to save a full checkpoint there (weights, optimizer, scheduler, RNG), through the
  Trainer's own save path; the run is then marked `interrupted` and the resume command printed.
  A second Ctrl-C aborts at once.
- A loss or gradient norm that is not a finite number stops the run at that step, before anything
  from it is saved, so the newest checkpoint is the last good one.

Both act through a TrainerCallback (the Trainer's public control flags), not by patching the trainer.
"""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager

WATCHED = ("loss", "grad_norm")


def sigterm_interrupts() -> None:
    """`kill` (SIGTERM, a Colab stop) ends the process as Ctrl-C does (KeyboardInterrupt), so the step
    it stops is recorded as interrupted rather than the process vanishing mid-write."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)


class StopGuard:
    def __init__(self, say):
        self.say = say
        self.requested: str | None = None  # "Ctrl-C" or "SIGTERM" once asked to stop
        self.nonfinite: tuple[int, str, float] | None = None  # (step, log key, value)

    @contextmanager
    def signals(self):
        """Ctrl-C and SIGTERM request a stop while the block runs; the previous handlers come back after."""
        def request(signum, frame):
            self.requested = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts at once
            self.say(f"\n{self.requested}: stopping after this step and saving a checkpoint "
                     "(Ctrl-C again to abort without one)")

        previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def callback(self):
        from transformers import TrainerCallback

        guard = self

        class StopCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if guard.requested and not guard.nonfinite:
                    control.should_save = True
                    control.should_training_stop = True

            def on_log(self, args, state, control, logs=None, **kwargs):
                for key in WATCHED:
                    value = (logs or {}).get(key)
                    if value is not None and not math.isfinite(value):
                        guard.nonfinite = (state.global_step, key, value)
                        control.should_training_stop = True
                        control.should_save = False  # never checkpoint the poisoned step
                        return

        return StopCallback()

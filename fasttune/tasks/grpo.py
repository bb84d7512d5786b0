"""GRPO: reinforcement fine-tuning with programmable rewards (TRL's GRPOTrainer).

Data: a `prompt` column (a string, or a list of chat messages) plus any other columns, which reach
the reward functions by name. For each prompt the model samples `num_generations` completions, the
rewards score them, and the policy moves toward the better ones relative to the group.

Reward functions follow TRL's convention, `reward(prompts, completions, **columns) -> list[float]`;
several can be given with weights. fasttune wraps each one so that a reward function that raises,
returns the wrong number of values or a non-number stops the run with a message naming it, instead
of a traceback from deep inside the trainer. The same functions score greedy answers to held-out
prompts before and after training (eval.json: the mean of each reward and the weighted total).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, get_args

from fasttune.data.prepare import PrepStats, to_dataset
from fasttune.data.validate import blank, missing
from fasttune.errors import ConfigError, RewardError
from fasttune.profiles import version
from fasttune.tasks import trl_choices
from fasttune.tasks.base import TRAINED_CLOSE, TRAINED_OPEN, RowView, Task, message_problems, prompt_messages


def checked(fn: Callable) -> Callable:
    name = getattr(fn, "__name__", repr(fn))

    def reward(prompts, completions, **columns):
        try:
            values = fn(prompts, completions, **columns)
        except Exception as error:
            raise RewardError(f"reward function '{name}' raised {type(error).__name__}: {error}") from error
        if not isinstance(values, list | tuple) or len(values) != len(completions):
            got = len(values) if isinstance(values, list | tuple) else type(values).__name__
            raise RewardError(f"reward function '{name}' returned {got} values for {len(completions)} completions")
        bad = [v for v in values if v is not None and not (isinstance(v, int | float) and math.isfinite(v))]
        if bad:
            raise RewardError(f"reward function '{name}' returned {bad[0]!r}; rewards must be finite numbers (or None)")
        return list(values)

    reward.__name__ = name
    return reward


Level = Literal["token", "sequence"]
Scaling = Literal["group", "batch", "none"]


@dataclass
class GRPO(Task):
    rewards: list[Callable] = field(default_factory=list)
    """Reward functions, reward(prompts, completions, **columns) -> list[float]; see fasttune.rewards."""
    reward_weights: list[float] = field(default_factory=list)
    """One weight per reward function (empty: all 1.0)."""
    system_prompt: str = ""
    """A system message put before every prompt (e.g. the answer format the rewards expect)."""
    prompt_column: str = "prompt"
    """Column holding the prompt: a string or a list of chat messages."""
    num_generations: int = 4
    """Completions sampled per prompt; the group their rewards are compared within."""
    max_prompt_length: int = 256
    """Prompts longer than this many tokens are left out (and counted): a cut prompt loses its question."""
    max_completion_length: int = 64
    """Longest sampled completion, in tokens."""
    temperature: float = 1.0
    """Sampling temperature for the completions."""
    beta: float = 0.04
    """Weight of the KL penalty toward the starting model (0: none, and no reference model kept)."""
    loss_type: str = "dapo"
    """How the token losses are averaged (TRL's loss_type): 'grpo' (per completion, then over them:
    favours short right answers), 'bnpo' (over the batch's tokens), 'dr_grpo' (over a constant,
    max_completion_length: Dr. GRPO), 'dapo' (over the accumulated batch's tokens: DAPO, TRL's
    default), or another loss the installed TRL lists."""
    importance_sampling_level: Level = "token"
    """Importance ratio per token, or per completion from its tokens' mean log-ratio ('sequence': GSPO,
    which pairs it with loss_type='grpo')."""
    epsilon: float = 0.2
    """Clipping: the importance ratio is kept within [1 - epsilon, 1 + epsilon_high]."""
    epsilon_high: float | None = None
    """Upper clipping bound (None: epsilon). DAPO's clip-higher uses 0.28."""
    num_iterations: int = 1
    """Updates per generated batch. With 1 the policy that sampled is the one updated, its importance
    ratio is 1, and clipping never binds: epsilon and epsilon_high act from 2."""
    scale_rewards: Scaling = "group"
    """Advantages divided by the rewards' standard deviation in the prompt's group, in the batch, or not
    at all ('none': Dr. GRPO, which finds the division biases toward questions that are too easy or hard)."""
    mask_truncated_completions: bool = False
    """Leave completions cut at max_completion_length out of the loss (DAPO's overlong filtering)."""

    name: ClassVar[str] = "grpo"
    scores_outputs: ClassVar[bool] = True
    has_eval_loss: ClassVar[bool] = False
    progress_fields: ClassVar[tuple[str, ...]] = ("reward",)  # the weighted total reward of the step's completions

    def __post_init__(self):
        if not self.rewards or not all(callable(r) for r in self.rewards):
            raise ConfigError("task.rewards must list at least one reward function (see fasttune.rewards)")
        if self.reward_weights and len(self.reward_weights) != len(self.rewards):
            raise ConfigError(f"task.reward_weights has {len(self.reward_weights)} weights "
                              f"for {len(self.rewards)} rewards")
        if self.num_generations < 2:
            raise ConfigError("task.num_generations must be at least 2: GRPO compares completions within a group")
        self._check_loss()

    def _check_loss(self) -> None:
        """The loss options, against the installed TRL (tasks/trl_choices.py), before any model loads."""
        losses = trl_choices.listed("trainer/grpo_config.py", "GRPOConfig", "loss_type")
        if losses and self.loss_type not in losses:
            raise ConfigError(f"task.loss_type={self.loss_type!r}: the installed TRL ({version('trl')}) "
                              f"has the GRPO losses {', '.join(losses)}")
        # the pairings TRL 1.16's GRPOTrainer refuses when it starts, after the model has loaded
        needs = {"luspo": "sequence", "vespo": "token"}.get(self.loss_type)
        if needs and self.importance_sampling_level != needs:
            raise ConfigError(f"task.loss_type={self.loss_type!r} needs task.importance_sampling_level={needs!r}")
        for name, kind in (("importance_sampling_level", Level), ("scale_rewards", Scaling)):
            value = getattr(self, name)  # a recipe file builds the task without the override parser's check
            if value not in get_args(kind):
                raise ConfigError(f"task.{name} must be one of {', '.join(get_args(kind))}, got {value!r}")
        if not self.epsilon > 0 or (self.epsilon_high is not None and not self.epsilon_high > 0):
            raise ConfigError(f"task.epsilon and task.epsilon_high must be positive, got {self.epsilon} and "
                              f"{self.epsilon_high}")
        if self.num_iterations < 1:
            raise ConfigError(f"task.num_iterations must be at least 1, got {self.num_iterations}")

    def check_train(self, train) -> None:
        if train.batch_size == "auto":
            raise ConfigError(f"train.batch_size=auto cannot keep GRPO's groups whole: set a multiple of "
                              f"task.num_generations ({self.num_generations})")
        batch = train.batch_size * train.grad_accum
        if batch % self.num_generations:
            raise ConfigError(f"train.batch_size x train.grad_accum ({batch}) must be a multiple of "
                              f"task.num_generations ({self.num_generations}): each prompt's group fills whole batches")

    @classmethod
    def from_config(cls, fields: dict) -> GRPO:
        """Built-in rewards come back from the call config.json recorded (fasttune.rewards.rebuild)."""
        from fasttune.rewards import rebuild

        return cls(**{**fields, "rewards": [rebuild(spec) for spec in fields["rewards"]]})

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        col = self.prompt_column
        if col not in row:
            return [missing(row, col)]
        prompt = row[col]
        if isinstance(prompt, str):
            return [] if not blank(prompt) else [(col, "is empty")]
        if isinstance(prompt, list) and prompt:
            return message_problems(col, prompt)
        return [(col, f"must be a string or a list of messages, got {type(prompt).__name__}")]

    def view_row(self, row: dict, tokenizer, max_length: int) -> RowView:
        """A row holds a prompt, which carries no loss: the completions sampled in training do
        (data_figures says how many). A prompt over max_prompt_length is left out whole."""
        n = len(tokenizer(self.render_prompt(tokenizer, self.messages(row)), add_special_tokens=False)["input_ids"])
        return RowView(n, 0, 0 if n <= self.max_prompt_length else n)

    def show_row(self, row: dict, tokenizer, max_length: int) -> str:
        columns = ", ".join(f"{k}={v!r}" for k, v in self.columns(row).items())
        return (self.render_prompt(tokenizer, self.messages(row))
                + f"{TRAINED_OPEN}{self.num_generations} sampled completions{TRAINED_CLOSE}\n"
                f"(the rewards also see: {columns or 'no columns'})")

    def data_figures(self, train_rows: list, eval_rows: list) -> dict:
        columns = sorted({k for r in train_rows for k in self.columns(r.data)})
        return {"completions_per_prompt": self.num_generations, "max_completion_tokens": self.max_completion_length,
                "reward_functions": [getattr(fn, "__name__", repr(fn)) for fn in self.rewards],
                "reward_columns": columns,
                "rows_missing_a_column": sum(any(c not in r.data for c in columns)
                                             for rows in (train_rows, eval_rows) for r in rows)}

    def messages(self, row: dict) -> list[dict]:
        return prompt_messages(row[self.prompt_column], self.system_prompt)

    def columns(self, row: dict) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != self.prompt_column}

    def datasets(self, train_rows: list, eval_rows: list, tokenizer, max_length: int):
        """Prompt datasets (TRL's conversational "prompt" column plus the other columns)."""
        def prompts(rows, st: PrepStats):
            for row in rows:
                view = self.view_row(row.data, tokenizer, max_length)
                st.figures.add(view)
                if view.cut:
                    st.dropped += 1
                    continue
                st.rows, st.tokens = st.rows + 1, st.tokens + view.tokens
                yield {"prompt": self.messages(row.data), **self.columns(row.data)}

        stats = {"train": PrepStats(), "eval": PrepStats()}
        train_ds, eval_ds = (to_dataset(prompts(rows, stats[split]))
                             for split, rows in (("train", train_rows), ("eval", eval_rows)))
        return train_ds, eval_ds, stats

    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, hooks):
        from trl import GRPOConfig, GRPOTrainer  # after unsloth (backends.choose ran first)

        from fasttune.trainer.arguments import common_args
        from fasttune.trainer.build import build

        args = GRPOConfig(
            **common_args(recipe, model, hooks.run_dir, hooks.run_name),
            num_generations=self.num_generations, max_completion_length=self.max_completion_length,
            temperature=self.temperature, beta=self.beta, reward_weights=list(self.reward_weights) or None,
            loss_type=self.loss_type, importance_sampling_level=self.importance_sampling_level,
            epsilon=self.epsilon, epsilon_high=self.epsilon_high, num_iterations=self.num_iterations,
            scale_rewards=self.scale_rewards, mask_truncated_completions=self.mask_truncated_completions,
        )
        return build(GRPOTrainer, hooks, model=model, reward_funcs=[checked(r) for r in self.rewards], args=args,
                     train_dataset=train_ds, processing_class=tokenizer)

    def count_tokens(self, batch: dict) -> tuple[int, int]:
        """GRPO trains on generated batches: prompt and completion tokens are seen (masks mark the
        real ones), and the loss is on the completion tokens."""
        prompt, completion = int(batch["prompt_mask"].sum()), int(batch["completion_mask"].sum())
        return prompt + completion, completion

    def prompt(self, row: dict):
        return self.messages(row), {"prompt": self.messages(row), **self.columns(row)}

    def sample_reference(self, reference: dict) -> str:
        """The columns the rewards see (the prompt is already the sample's heading)."""
        return super().sample_reference({k: v for k, v in reference.items() if k != "prompt"})

    def metrics(self, predictions: list[str], references: list[dict], eval_loss: float | None) -> dict:
        if not predictions:
            return {}
        prompts = [r["prompt"] for r in references]
        completions = [[{"role": "assistant", "content": p}] for p in predictions]
        columns = {k: [r[k] for r in references] for k in references[0] if k != "prompt"}
        weights = list(self.reward_weights) or [1.0] * len(self.rewards)
        means, total = {}, 0.0
        for fn, weight in zip(self.rewards, weights):
            values = [v for v in checked(fn)(prompts, completions, **columns) if v is not None]
            mean = sum(values) / len(values) if values else 0.0
            means[fn.__name__] = round(mean, 4)
            total += weight * mean
        return {"reward": round(total, 4), "rewards": means, "rows": len(predictions)}

"""Render conversations with the model's chat template and mark which tokens the loss sees.

Loss masks are built from the rendered text rather than from `{% generation %}` markers: most
chat templates (SmolLM2's included) have no such markers, so TRL's `assistant_only_loss` refuses
them. Instead each assistant turn's character span is found by rendering the conversation up to
that turn twice — once ending in the generation prompt, once including the turn — and tokens whose
characters start inside a span get labels. This works for any template that renders a prefix of
the conversation as a prefix of the text, and says so clearly when one does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from fasttune import thinking
from fasttune.errors import ConfigError, TemplateError

# Used when a model has no chat template of its own (base models).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# fasttune's tool-calling turns, for models whose own template has no tools (SmolLM2's has none), with
# the Hermes / Qwen2.5 conventions: tool signatures in the system text inside <tools></tools>, calls as
# {"name", "arguments"} JSON inside <tool_call></tool_call>, and results returned as a user turn inside
# <tool_response></tool_response>. Written in the model's family's turns (TOOLS_CHATML, TOOLS_GEMMA), and
# saved with the tokenizer, so training, evaluation, `fasttune chat` and every export render tool calls
# identically. Every newline sits inside {{ '...' }}: transformers renders with trim_blocks, which would
# drop a newline written right after a {% %} tag.
_TOOLS_TEXT = (
    "{{ '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{% for tool in tools %}{{ '\\n' + (tool | tojson) }}{% endfor %}"
    "{{ '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"
    "\\n</tool_call>' }}"
)
_CALLS = (  # an assistant turn's calls, after its text
    "{% for call in message['tool_calls'] %}{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ '<tool_call>\\n' + ({'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson)"
    " + '\\n</tool_call>' }}{% endfor %}"
)
TOOLS_CHATML = (
    "{% if tools %}{{ '<|im_start|>system\\n' }}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}"
    + _TOOLS_TEXT + "{{ '<|im_end|>\\n' }}"
    "{% elif messages[0]['role'] == 'system' %}{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and loop.first %}"
    "{% elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{% elif message['role'] == 'assistant' and message.get('tool_calls') %}{{ '<|im_start|>assistant\\n' }}"
    "{% if message['content'] %}{{ message['content'] + '\\n' }}{% endif %}" + _CALLS + "{{ '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# fasttune's thinking template, for models whose own template has no reasoning (SmolLM2's has
# none): ChatML with the Qwen3 conventions. An assistant message with `reasoning_content` renders it
# as "<think>\n…\n</think>\n\n" before its answer; one without renders as plain ChatML. With
# `enable_thinking=false` the generation prompt prefills an empty think block, so the model answers
# directly; unset or true, the model opens its own. Saved with the tokenizer like TOOLS_CHATML.
THINK_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' and message.get('reasoning_content') is string %}"
    "{{ '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}{% endif %}"
    "{{ message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)

# Gemma's own turns (as Google's Gemma 3 instruct template writes them), for Gemma models that come
# without a template (the base models): roles `user` and `model`, no system role (a system message
# becomes the head of the first user turn), BOS written by the template.
GEMMA = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + (message['content'] | trim)"
    " + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# GEMMA with tools: the tool signatures follow the system text at the head of the first user turn; a
# tool's result is a user turn. Without tools it renders exactly as GEMMA.
TOOLS_GEMMA = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<start_of_turn>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><end_of_turn>\\n' }}"
    "{% else %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' }}{% if loop.first %}{{ first_user_prefix }}"
    "{% if tools %}" + _TOOLS_TEXT + "{{ '\\n\\n' }}{% endif %}{% endif %}"
    "{% if message.get('tool_calls') %}{% if message['content'] %}{{ (message['content'] | trim) + '\\n' }}{% endif %}"
    + _CALLS + "{% else %}{{ message['content'] | trim }}{% endif %}{{ '<end_of_turn>\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

FAMILIES = {"chatml": CHATML, "gemma": GEMMA}
"""fasttune's templates for models without one, by the name `model.chat_template` takes."""
TOOLS = {"chatml": TOOLS_CHATML, "gemma": TOOLS_GEMMA}
"""fasttune's tool-calling templates, by the family whose turns they write."""
MARKERS = {"gemma": ("<start_of_turn>", "<end_of_turn>")}
"""A template-less model gets a family's template when its vocabulary holds these turn markers, each as
one token (a model trained with them); otherwise ChatML, whose markers it must then learn to spell."""

IGNORE = -100  # label of tokens the loss skips (PyTorch's cross-entropy ignore_index)


@dataclass(frozen=True)
class TemplateChoice:
    """Which chat template a run trains with: `name` is what model.chat_template records ('model': the
    model's own; a FAMILIES name; a .jinja path), `why` what the run log and `fasttune check` say."""

    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.name} ({self.why})"


def single_token(tokenizer, text: str) -> bool:
    return len(tokenizer(text, add_special_tokens=False).input_ids) == 1


def set_chat_template(tokenizer, setting: str = "auto") -> TemplateChoice:
    """Give the tokenizer the template `model.chat_template` asks for. 'auto': the model's own when it
    has one, else its family's when its vocabulary holds the family's turn markers (MARKERS), else
    ChatML. 'model', a FAMILIES name or a .jinja file: that one."""
    from pathlib import Path

    if setting.endswith(".jinja"):
        path = Path(setting).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.chat_template: no such template file {setting}")
        tokenizer.chat_template = path.read_text()
        return TemplateChoice(setting, "model.chat_template")
    if setting in FAMILIES:
        tokenizer.chat_template = FAMILIES[setting]
        return TemplateChoice(setting, "model.chat_template")
    if tokenizer.chat_template:
        return TemplateChoice("model", "the model's own")
    if setting == "model":
        raise ConfigError("model.chat_template=model, but the model has no chat template; use auto, "
                          f"{', '.join(FAMILIES)} or a .jinja file")
    for family, markers in MARKERS.items():
        if all(single_token(tokenizer, marker) for marker in markers):
            tokenizer.chat_template = FAMILIES[family]
            return TemplateChoice(family, f"the model has no template; {' and '.join(markers)} are tokens of "
                                          "its vocabulary")
    tokenizer.chat_template = CHATML
    return TemplateChoice("chatml", "the model has no template, and its vocabulary holds no family's turn markers")


def end_of_turn_ids(tokenizer) -> list[int]:
    """The ids generation stops on: the end of an assistant turn as the chat template writes it, when
    that is one token of the vocabulary (ChatML's <|im_end|>, Gemma's <end_of_turn>), and EOS."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if tokenizer.chat_template:
        text = render(tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
        after = text[text.rindex("y") + 1:]
        first = tokenizer(after, add_special_tokens=False).input_ids[:1]
        if first and first[0] in tokenizer.all_special_ids + list(tokenizer.get_added_vocab().values()):
            ids = [*first, *(i for i in ids if i != first[0])]
    return ids


def ensure_thinking_template(tokenizer, setting: str = "auto") -> TemplateChoice:
    """The template `setting` gives when it renders reasoning itself; else fasttune's thinking ChatML."""
    choice = set_chat_template(tokenizer, setting)
    if thinking.takes_reasoning(tokenizer.chat_template):
        return TemplateChoice(choice.name, f"{choice.why}, with reasoning")
    tokenizer.chat_template = THINK_CHATML
    return TemplateChoice("chatml", "fasttune's thinking ChatML: the template had no reasoning")


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False, tools: list | None = None,
           enable_thinking: bool | None = None) -> str:
    """The conversation as text; reasoning given as `thinking` is renamed to `reasoning_content` first,
    and `enable_thinking` reaches the template only when it is set."""
    return tokenizer.apply_chat_template([thinking.normalized(m) for m in messages], tokenize=False,
                                         add_generation_prompt=add_generation_prompt,
                                         **({"tools": tools} if tools else {}),
                                         **thinking.template_kwargs(enable_thinking))


def render_prompt(tokenizer, prompt, enable_thinking: bool | None = None) -> str:
    """A prompt (raw text, a message list, or {"messages", "tools"}) as the text the model continues:
    raw text as it is, conversations through the chat template ending in the generation prompt."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return render(tokenizer, prompt["messages"], add_generation_prompt=True, tools=prompt["tools"],
                      enable_thinking=enable_thinking)
    return render(tokenizer, prompt, add_generation_prompt=True, enable_thinking=enable_thinking)


def assistant_spans(tokenizer, messages: list[dict], tools: list | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn (with its end token)."""
    text = render(tokenizer, messages, tools=tools)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
        upto = render(tokenizer, messages[: i + 1], tools=tools)
        if not (upto.startswith(before) and text.startswith(upto)):
            raise TemplateError(
                "the chat template does not render a conversation's beginning as the beginning of its text, "
                "so assistant turns cannot be located; set a simpler template (e.g. ChatML)"
            )
        spans.append((len(before), len(upto)))
    return text, spans


@dataclass
class Tokenized:
    """One tokenized row: token ids, their labels (IGNORE where no loss), and whether max_length cut it."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @classmethod
    def cut(cls, ids: list[int], labels: list[int], max_length: int) -> Tokenized:
        """The first `max_length` tokens, and whether anything was cut off after them."""
        return cls(ids[:max_length], labels[:max_length], len(ids) > max_length)

    def example(self) -> dict:
        """As SFTTask.tokenize returns it: {"input_ids", "labels", "truncated"}."""
        return {"input_ids": self.input_ids, "labels": self.labels, "truncated": self.truncated}


def tokenize_conversation(tokenizer, messages: list[dict], max_length: int, tools: list | None = None,
                          train_on_reasoning: bool = True) -> Tokenized:
    """Token ids of the rendered conversation; labels are the ids on assistant turns, IGNORE elsewhere
    (and on each turn's think block too when `train_on_reasoning` is off)."""
    text, spans = assistant_spans(tokenizer, messages, tools)
    if not train_on_reasoning:
        turns = [thinking.normalized(m) for m in messages if m["role"] == "assistant"]
        spans = [(answer_start(text, span, turn), span[1]) for span, turn in zip(spans, turns)]
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, encoding["offset_mapping"])
    ]
    return Tokenized.cut(ids, labels, max_length)


def answer_start(text: str, span: tuple[int, int], turn: dict) -> int:
    """Where an assistant turn's answer begins in the rendered text: after its think block (the tags
    and the reasoning, however the template writes them), or at the turn's start when it has none."""
    start, end = span
    reasoning = turn.get(thinking.REASONING)
    if reasoning is None:
        return start
    after = text.find(reasoning, start, end) + len(reasoning) if reasoning else start
    answer = text.find(turn["content"], after, end) if turn.get("content") else -1
    if answer < 0:  # no answer text to find: everything up to the end of the think block is reasoning
        close = text.find(thinking.CLOSE, after, end)
        return close + len(thinking.CLOSE) if close >= 0 else after
    return answer

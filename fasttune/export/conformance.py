"""Does every place the exported model is rendered give the tokens training gave? export.json's
`template_conformance`.

A GGUF that answers in gibberish, or never stops, after export is most often a template problem: the
runtime renders a conversation differently from training (another system-prompt placement, a
missing newline, a stop marker spelled in pieces). So each GGUF export renders a fixed set of
conversations (CASES: with and without a system prompt, several turns, and, when the template takes
them, a tool call with its result and thinking on and off) in four ways and compares token ids:

    training            fasttune's render with the run's tokenizer, tokenized as training tokenized it
    gguf_transformers   the chat template stored in the GGUF, rendered by transformers' Jinja
    gguf_llama_cpp      that template as llama-cpp-python renders it (Jinja2ChatFormatter, the
                        formatter its chat completions use for a GGUF's own template)
    ollama              the Modelfile's TEMPLATE and SYSTEM as Ollama renders them (fasttune/export/
                        go_template.py: a Python rendering of Go's text/template subset; Go itself
                        is not run)

Every render but training's is tokenized by llama.cpp from the GGUF's own vocabulary, special tokens
parsed, with a BOS only where that runtime adds one (Ollama: when the GGUF says add_bos_token).

A render whose text differs from training's is a template problem and fails the export. A render
with training's very text that llama.cpp splits into other ids is a tokenizer difference: it is
recorded (`tokenizer_differences`) and said, not failed, since no template can mend it. llama.cpp's
SmolLM2 pre-tokenizer does this: it splits digits off before the whitespace rule runs, so "\n\n5" is
"\n\n" + "5" to it and "\n" + "\n" + "5" to the model's own tokenizer; fasttune's thinking template
writes "</think>\n\n" before an answer, so an answer that starts with a digit meets it.

It also checks stopping: the end of turn training wrote (`end_of_turn_ids`) must be an
end-of-generation token for llama.cpp and the Modelfile's `PARAMETER stop`.

What is not compared is said in the record, never counted as identical: Ollama for a Modelfile with
no TEMPLATE (a template fasttune has no Go twin for), and Ollama's tool calls (it writes the tools
and the call arguments as JSON of its own, not the template's `tojson`).
"""

from __future__ import annotations

import re
from pathlib import Path

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
CASES = {
    "system_prompt": [{"role": "system", "content": "You answer in one short sentence."},
                      {"role": "user", "content": "What is the capital of France?"}],
    "no_system_prompt": [{"role": "user", "content": "Name a primary colour."}],
    "multi_turn": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
                   {"role": "user", "content": "Count to three."}],
    "tool_call": [{"role": "user", "content": "Is it raining in Oslo?"},
                  {"role": "assistant", "content": "", "tool_calls": [CALL]},
                  {"role": "tool", "content": '{"rain": true}'}],
    "thinking_on": [{"role": "user", "content": "What is 2 + 3?"},
                    {"role": "assistant", "content": "5", "reasoning_content": "2 plus 3 is 5."},
                    {"role": "user", "content": "And 4 + 4?"}],
}
CASES["thinking_off"] = CASES["thinking_on"]
RENDERERS = ("gguf_transformers", "gguf_llama_cpp", "ollama")


def applicable(template: str) -> dict[str, dict]:
    """The cases `template` takes: tools only when it reads `tools`, thinking only when it renders reasoning."""
    from fasttune import thinking

    cases = {}
    for name, messages in CASES.items():
        if name == "tool_call" and "tools" not in template:
            continue
        if name.startswith("thinking") and not thinking.takes_reasoning(template):
            continue
        switch = {"thinking_on": True, "thinking_off": False}.get(name) if thinking.takes_switch(template) else None
        cases[name] = {"messages": messages, "tools": [TOOL] if name == "tool_call" else None, "think": switch}
    return cases


def read_modelfile(path: Path) -> dict:
    """The TEMPLATE, SYSTEM and `PARAMETER stop` values of a Modelfile as fasttune writes it."""
    text = path.read_text()
    found = {key: re.search(rf'^{key} """(.*?)"""$', text, re.DOTALL | re.MULTILINE) for key in ("TEMPLATE", "SYSTEM")}
    return {"template": found["TEMPLATE"] and found["TEMPLATE"].group(1),
            "system": found["SYSTEM"] and found["SYSTEM"].group(1),
            "stops": re.findall(r'^PARAMETER stop "(.*)"$', text, re.MULTILINE)}


def check(gguf_path: Path, modelfile: Path, tokenizer) -> dict:
    """The `template_conformance` record of one GGUF and its Modelfile, against `tokenizer` (the
    merged model's: the run's tokenizer and chat template). Its `problems` say what does not conform:
    the first differing token (case, renderer, position, both tokens) and any stop that is missing."""
    from fasttune.chat_template import end_of_turn_ids, render
    from fasttune.export.go_template import GoTemplateError, ollama_render
    from fasttune.gguf_inference import runtime, vocabulary

    runtime()  # llama-cpp-python installed, if this is the first use
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    ollama = read_modelfile(modelfile)
    cases = applicable(tokenizer.chat_template)
    record = {"cases": list(cases), "renderers": {}, "compared": 0, "same_text": 0, "identical": 0,
              "not_compared": {}, "tokenizer_differences": [], "problems": []}
    with vocabulary(gguf_path) as vocab:
        meta = vocab.metadata
        gguf_template = meta.get("tokenizer.chat_template")
        add_bos = meta.get("tokenizer.ggml.add_bos_token") == "true"
        def piece(ids: list[int]) -> bytes:  # for messages: special tokens written out
            return vocab.detokenize(ids, special=True)

        def llama_ids(text: str) -> list[int]:
            return vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)

        def gguf_transformers(case):
            return tokenizer.apply_chat_template(
                case["messages"], chat_template=gguf_template, tokenize=False, add_generation_prompt=True,
                **({"tools": case["tools"]} if case["tools"] else {}),
                **({} if case["think"] is None else {"enable_thinking": case["think"]}))

        def gguf_llama_cpp(case):
            formatter = Jinja2ChatFormatter(gguf_template, eos_token=tokenizer.eos_token or "",
                                            bos_token=tokenizer.bos_token or "", add_generation_prompt=True)
            kwargs = {} if case["think"] is None else {"enable_thinking": case["think"]}
            return formatter(messages=case["messages"], tools=case["tools"], **kwargs).prompt

        def ollama_text(case):  # Ollama's tokenizer adds the BOS where the GGUF says so: written out here
            return (tokenizer.bos_token if add_bos else "") + ollama_render(
                ollama["template"], case["messages"], ollama["system"], case["tools"], case["think"])

        renderers = {"gguf_transformers": gguf_transformers, "gguf_llama_cpp": gguf_llama_cpp, "ollama": ollama_text}
        if gguf_template is None:
            record["problems"].append("the GGUF carries no chat template: runtimes would render conversations "
                                      "their own way")
            renderers = {"ollama": ollama_text}
        for name, case in cases.items():
            text = render(tokenizer, case["messages"], add_generation_prompt=True, tools=case["tools"],
                          enable_thinking=case["think"])
            expected = tokenizer(text, add_special_tokens=False).input_ids
            for renderer, text_of in renderers.items():
                skip = not_compared(renderer, name, ollama["template"])
                if skip:
                    record["not_compared"].setdefault(renderer, {})[name] = skip
                    continue
                try:
                    got_text = text_of(case)
                except GoTemplateError as error:
                    record["not_compared"].setdefault(renderer, {})[name] = f"the TEMPLATE uses {error}"
                    continue
                got = llama_ids(got_text)
                record["compared"] += 1
                record["same_text"] += got_text == text
                record["identical"] += got == expected
                record["renderers"].setdefault(renderer, []).append(name)
                if got_text != text and "first_difference" not in record:
                    record["first_difference"] = difference(name, renderer, expected, got, piece)
                    record["problems"].append(record["first_difference"]["said"])
                elif got_text == text and got != expected:  # one text, split otherwise by llama.cpp's tokenizer
                    record["tokenizer_differences"].append(difference(name, renderer, expected, got, piece))
        record["stop"] = stopping(vocab, end_of_turn_ids(tokenizer)[0], tokenizer, ollama["stops"], llama_ids)
    record["problems"] += record["stop"].pop("problems")
    return record


def not_compared(renderer: str, case: str, modelfile_template: str | None) -> str | None:
    if renderer != "ollama":
        return None
    if modelfile_template is None:
        return "the Modelfile has no TEMPLATE: fasttune writes Go templates for ChatML and Gemma turns only"
    if case == "tool_call":
        return "Ollama writes tools and call arguments as its own JSON, not the template's tojson"
    return None


def difference(case: str, renderer: str, expected: list[int], got: list[int], piece) -> dict:
    at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))

    def show(ids, i):
        return None if i >= len(ids) else {"id": ids[i], "text": piece([ids[i]]).decode("utf-8", "replace")}

    want, have = show(expected, at), show(got, at)
    context = piece(expected[max(0, at - 8):at]).decode("utf-8", "replace")
    return {"case": case, "renderer": renderer, "position": at, "training": want, renderer: have,
            "said": f"case {case!r}: the {renderer} render differs from training's at token {at} (after "
                    f"{context!r}): training has {want}, {renderer} has {have}"}


def stopping(vocab, end_of_turn: int, tokenizer, modelfile_stops: list[str], llama_ids) -> dict:
    """Whether llama.cpp and the Modelfile stop where training's turns end."""
    from fasttune.gguf_inference import runtime

    llama_cpp = runtime()
    meta = vocab.metadata
    stops_llama = bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(vocab.model), end_of_turn))
    stop_ids = [llama_ids(s) for s in modelfile_stops]
    record = {"end_of_turn": {"id": end_of_turn, "text": tokenizer.convert_ids_to_tokens(end_of_turn)},
              "gguf_eos_id": _int(meta.get("tokenizer.ggml.eos_token_id")),
              "gguf_eot_id": _int(meta.get("tokenizer.ggml.eot_token_id")),
              "llama_cpp_stops_on_it": stops_llama, "modelfile_stop": modelfile_stops,
              "modelfile_stops_on_it": [end_of_turn] in stop_ids, "problems": []}
    if not stops_llama:
        record["problems"].append(f"llama.cpp does not end generation on {record['end_of_turn']}, where "
                                  "training's turns end: the model would not stop")
    if modelfile_stops and not record["modelfile_stops_on_it"]:
        record["problems"].append(f"the Modelfile stops on {modelfile_stops}, not on training's end of turn "
                                  f"{record['end_of_turn']}")
    return record


def _int(value):
    return None if value is None else int(value)

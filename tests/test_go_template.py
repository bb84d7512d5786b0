"""fasttune's rendering of Go text/template (fasttune/export/go_template.py), held to what Go and
Ollama do: the expected strings are Go's documented behaviour, written out by hand."""

from __future__ import annotations

import pytest

from fasttune.errors import GoTemplateError
from fasttune.export.go_template import ollama_render, render
from fasttune.export.modelfile import CHATML_TEMPLATE, GEMMA_TEMPLATE, THINK_CHATML_TEMPLATE


def test_trim_markers_take_all_whitespace_beside_them():
    assert render("a \n {{- .X -}} \n b", {"X": "x"}) == "axb"
    assert render("a \n {{ .X }} \n b", {"X": "x"}) == "a \n x \n b"


def test_conditions_variables_and_ranges():
    template = ('{{- $seen := false }}{{ range $i, $v := .L }}{{ if $seen }},{{ end }}{{ $seen = true }}'
                '{{ if eq $v "b" }}B{{ else if eq $i 2 }}third{{ else }}{{ $v }}{{ end }}{{ end }}')
    assert render(template, {"L": ["a", "b", "c"]}) == "a,B,third"
    assert render("{{ range .L }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3]}) == "1"
    assert render("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3]}) == "13"
    # and/or give back the argument that decided, as in Go; a missing key prints <no value>
    assert render('{{ and 1 "" }}|{{ or "" "x" }}|{{ not .L }}|{{ len .L }}|{{ .Nope }}', {"L": [1]}) == \
        "|x|false|1|<no value>"


def test_what_is_not_implemented_is_refused_by_name():
    for template, named in [("{{ .X | printf }}", "pipes"), ("{{ with .X }}{{ end }}", "with"),
                            ("{{ json .X }}", "json"), ("{{ if .X }}", "end")]:
        with pytest.raises(GoTemplateError, match=named):
            render(template, {"X": 1})


def test_ollama_keeps_system_messages_in_the_messages_and_adds_the_modelfile_system():
    """template.Execute: system messages are in .System (joined) and still in .Messages; the
    Modelfile's SYSTEM is the first message when a request has none; a role's consecutive messages join."""
    shown = "{{ .System }}|{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}"
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert ollama_render(shown, messages, system="S") == "S|system:S;user:a\n\nb;"
    assert ollama_render(shown, [{"role": "system", "content": "mine"}, *messages], system="S") == \
        "mine|system:mine;user:a\n\nb;"


def test_the_modelfile_twins_render_the_jinja_templates_turns():
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello", "reasoning_content": "greet"},
                    {"role": "user", "content": "Bye"}]
    assert ollama_render(CHATML_TEMPLATE, conversation) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
    assert ollama_render(THINK_CHATML_TEMPLATE, conversation, think=False).endswith(
        "<|im_start|>assistant\n<think>\ngreet\n</think>\n\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert ollama_render(GEMMA_TEMPLATE, conversation) == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")

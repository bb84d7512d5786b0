"""The Ollama Modelfile's TEMPLATE, rendered here as Ollama would render it, so that export can check it
against the template the model trained with (fasttune/export/conformance.py).

Ollama renders a TEMPLATE with Go's text/template. Go is not a dependency of fasttune and no Python
package implements text/template, so this module implements the part of it that Modelfile templates
use. It is written here because the check runs on every export, on machines without Go:
- text, and actions `{{ ... }}` with the trim markers `{{- ` and ` -}}` (all whitespace beside them);
- `if` / `else if` / `else` / `end`; `range PIPELINE` and `range $i, $x := PIPELINE`, with `break`
  and `continue`; variables declared with `:=` and assigned with `=`, scoped to their structure;
- operands `.Field.Sub`, `$`, `$.Field`, `$x.Field`, "string", `true`/`false`, parenthesised calls,
  and the functions eq, ne, and, or, not, len;
- Go's truth (false, 0, "", empty lists and maps are false) and printing (a missing key prints
  "<no value>").
Anything else (pipes, `with`, `define`, Ollama's `json`) is refused with the construct named, so a
template this cannot render is reported as not checked rather than checked wrongly.

`ollama_render` adds what Ollama does before rendering (ollama/ollama, server/routes.go and
template/template.go's Execute): the Modelfile's SYSTEM becomes the first message when a request has
none; consecutive messages of one role are joined with a blank line (tool results excepted); every
system message is in `.System` (joined) and also stays in `.Messages`.
"""

from __future__ import annotations

import re

from fasttune.errors import GoTemplateError

ACTION = re.compile(r"\{\{(- )?(.*?)( -)?\}\}", re.DOTALL)
TOKEN = re.compile(r'\s*(:=|=|,|\(|\)|"(?:\\.|[^"\\])*"|[^\s(),=:]+)')
FUNCTIONS = {
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "not": lambda a: not truth(a),
    "len": len,
}
MESSAGE_FIELDS = {"Role": "", "Content": "", "Thinking": "", "ToolCalls": [], "ToolName": "", "Images": []}
"""Fields of Ollama's api.Message; a field a message lacks is its zero value, as in Go's struct."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def truth(value) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


def parse(template: str) -> list:
    """The template as a tree: text strings, ("print", expr), ("set", ...), ("if", [(cond, body)...],
    else_body), ("range", names, expr, body), ("break",), ("continue",)."""
    pieces, at = [], 0
    for match in ACTION.finditer(template):
        pieces += [["text", template[at:match.start()]],
                   ["action", match.group(2).strip(), match.group(1), match.group(3)]]
        at = match.end()
    pieces.append(["text", template[at:]])
    for i, piece in enumerate(pieces):  # a trim marker takes all the whitespace beside it
        if piece[0] == "action":
            if piece[2]:
                pieces[i - 1][1] = pieces[i - 1][1].rstrip(" \t\r\n")
            if piece[3]:
                pieces[i + 1][1] = pieces[i + 1][1].lstrip(" \t\r\n")
    stream = iter((kind, text) for kind, text, *_ in pieces)
    body, stop = _block(stream)
    if stop is not None:
        raise GoTemplateError(f"{{{{ {stop} }}}} without its opening action")
    return body


def _block(stream) -> tuple[list, str | None]:
    """Nodes up to an `else…` or `end` action, and that action (None at the template's end)."""
    nodes = []
    for kind, text in stream:
        if kind == "text":
            if text:
                nodes.append(text)
            continue
        if text.startswith("/*") or not text:  # a comment
            continue
        word = text.split(None, 1)[0]
        if word in ("end", "else"):
            return nodes, text
        if word == "if":
            nodes.append(_if(text[2:], stream))
        elif word == "range":
            nodes.append(_range(text[5:], stream))
        elif word in ("break", "continue"):
            nodes.append((word,))
        elif word in ("with", "define", "template", "block"):
            raise GoTemplateError(f"{{{{ {word} }}}} is not supported")
        elif re.match(r"\$\w*\s*:?=", text):
            name, expr = re.split(r"\s*:?=\s*", text, maxsplit=1)
            nodes.append(("set", name, ":=" in text, _expression(expr)))
        else:
            nodes.append(("print", _expression(text)))
    return nodes, None


def _if(condition: str, stream) -> tuple:
    branches, otherwise = [], []
    while True:
        body, stop = _block(stream)
        branches.append((_expression(condition), body))
        if stop is None:
            raise GoTemplateError("{{ if }} without {{ end }}")
        if stop == "end":
            return ("if", branches, otherwise)
        if stop.startswith("else if "):
            condition = stop[len("else if "):]
            continue
        otherwise, stop = _block(stream)
        if stop != "end":
            raise GoTemplateError("{{ else }} without {{ end }}")
        return ("if", branches, otherwise)


def _range(head: str, stream) -> tuple:
    names, expr = [], head
    if ":=" in head:
        declared, expr = head.split(":=", 1)
        names = [n.strip() for n in declared.split(",")]
    body, stop = _block(stream)
    if stop != "end":
        raise GoTemplateError("{{ range }} without {{ end }} (or with {{ else }}, not supported)")
    return ("range", names, _expression(expr), body)


def _expression(text: str):
    """A command as nested lists: ["call", name, args...] or an operand string."""
    tokens = TOKEN.findall(text)
    if "|" in tokens:
        raise GoTemplateError(f"pipes are not supported: {text!r}")
    expr, rest = _command(tokens)
    if rest:
        raise GoTemplateError(f"cannot read {text!r}")
    return expr


def _command(tokens: list[str]):
    args = []
    while tokens and tokens[0] != ")":
        token, tokens = tokens[0], tokens[1:]
        if token == "(":
            inner, tokens = _command(tokens)
            if not tokens or tokens[0] != ")":
                raise GoTemplateError("unbalanced parentheses")
            tokens = tokens[1:]
            args.append(inner)
        else:
            args.append(token)
    if args and isinstance(args[0], str) and re.match(r"[A-Za-z_]", args[0]) and args[0] not in ("true", "false"):
        if args[0] not in FUNCTIONS and args[0] not in ("and", "or"):
            raise GoTemplateError(f"function {args[0]!r} is not supported")
        return ["call", *args], tokens
    if len(args) != 1:
        raise GoTemplateError(f"cannot read {' '.join(map(str, args))!r}")
    return args[0], tokens


def render(template: str, data: dict) -> str:
    out: list[str] = []
    _run(parse(template), data, [{"$": data}], out)
    return "".join(out)


def _run(nodes: list, dot, scopes: list[dict], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "print":
            value = _value(node[1], dot, scopes)
            out.append("<no value>" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        elif node[0] == "set":
            _, name, declare, expr = node
            value = _value(expr, dot, scopes)
            owner = scopes[-1] if declare else next((s for s in reversed(scopes) if name in s), None)
            if owner is None:
                raise GoTemplateError(f"{name} is assigned before it is declared")
            owner[name] = value
        elif node[0] == "if":
            _, branches, otherwise = node
            chosen = next((body for cond, body in branches if truth(_value(cond, dot, scopes))), otherwise)
            _run(chosen, dot, [*scopes, {}], out)
        elif node[0] == "range":
            _, names, expr, body = node
            items = _value(expr, dot, scopes) or []
            for index, item in enumerate(items.items() if isinstance(items, dict) else enumerate(items)):
                key, element = item if isinstance(items, dict) else (index, item[1])
                scope = dict(zip(names, (key, element))) if len(names) == 2 else dict(zip(names, (element,)))
                try:
                    _run(body, element, [*scopes, scope], out)
                except _Continue:
                    continue
                except _Break:
                    break
        elif node[0] == "break":
            raise _Break
        elif node[0] == "continue":
            raise _Continue


def _value(expr, dot, scopes: list[dict]):
    if isinstance(expr, list):  # ["call", name, args...]
        name, args = expr[1], expr[2:]
        if name == "and":  # Go's and/or return an argument, and stop at the first that decides
            value = None
            for arg in args:
                value = _value(arg, dot, scopes)
                if not truth(value):
                    return value
            return value
        if name == "or":
            value = None
            for arg in args:
                value = _value(arg, dot, scopes)
                if truth(value):
                    return value
            return value
        return FUNCTIONS[name](*(_value(a, dot, scopes) for a in args))
    if expr.startswith('"'):
        return bytes(expr[1:-1], "utf-8").decode("unicode_escape")
    if expr in ("true", "false"):
        return expr == "true"
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    if expr.startswith("$"):
        name, _, path = expr.partition(".")
        base = next((s[name] for s in reversed(scopes) if name in s), None)
        if base is None and not any(name in s for s in scopes):
            raise GoTemplateError(f"undefined variable {name}")
        return _fields(base, path)
    if expr.startswith("."):
        return _fields(dot, expr[1:])
    raise GoTemplateError(f"cannot read {expr!r}")


def _fields(value, path: str):
    for name in filter(None, path.split(".")):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def ollama_render(template: str, messages: list[dict], system: str | None = None, tools: list | None = None,
                  think: bool | None = None) -> str:
    """The prompt Ollama's /api/chat builds from `messages` (OpenAI-style dicts; reasoning as
    `reasoning_content`), a Modelfile with TEMPLATE `template` and SYSTEM `system`, and the request's
    `think` (None: not set)."""
    if system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    collated: list[dict] = []
    for m in messages:
        message = {**MESSAGE_FIELDS, "Role": m["role"], "Content": m.get("content") or "",
                   "Thinking": m.get("reasoning_content") or "", "ToolCalls": m.get("tool_calls") or []}
        if collated and collated[-1]["Role"] == message["Role"] and message["Role"] != "tool":
            collated[-1] = {**collated[-1], "Content": collated[-1]["Content"] + "\n\n" + message["Content"]}
        else:
            collated.append(message)
    system_text = "\n\n".join(m["Content"] for m in collated if m["Role"] == "system")
    return render(template, {"System": system_text, "Messages": collated, "Tools": tools or [], "Response": "",
                             "Think": bool(think), "IsThinkSet": think is not None})

"""Generate the small "Python stdlib reference" corpus for the continued pre-training demo.

Source: Python's own standard-library docstrings, read offline from the running
interpreter the way ``pydoc`` does (``inspect.getdoc`` / ``inspect.signature``).
For each module in ``MODULES`` (fixed order) we take the module docstring, then
every public name (``__all__`` if the module defines it, else names defined in
the module or its C accelerator ``_<module>``) that is a class or a function,
then the public methods defined directly on those classes, names sorted. Each
document is one module / class / function / method rendered like reference
text: a header line with the signature (omitted where ``inspect.signature``
raises), a blank line, then the docstring. Private names (leading underscore)
and short docstrings (< 80 chars) are skipped, a document is cut to at most
~1500 characters at a paragraph or sentence boundary, memory addresses in
default values are removed, and each module contributes at most
``MAX_MODULE_CHARS`` characters (documents that would overflow are skipped).

Held-out split: whole modules, not documents. The modules in ``EVAL_MODULES``
go only to the eval file, so no eval module's text appears in train and eval
perplexity measures the domain, not memorised text.

The docstrings depend on the Python version; the committed files were made
with CPython 3.11.7 (the script prints the version it ran with). Stdlib only
and deterministic. Run from anywhere:
    python recipes/data/make_corpus.py
It rewrites corpus_train.jsonl and corpus_eval.jsonl next to this script.
"""
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

MODULES = ["json", "textwrap", "itertools", "functools", "collections", "pathlib", "string", "random",
           "statistics", "heapq", "bisect", "fractions", "decimal", "datetime", "calendar", "csv", "pprint",
           "difflib", "fnmatch", "glob", "argparse", "enum", "dataclasses", "contextlib", "operator",
           "shutil", "tempfile", "queue", "ipaddress"]
EVAL_MODULES = {"collections", "csv", "calendar"}
MIN_DOC, MAX_DOC, MAX_MODULE_CHARS = 80, 1500, 10000
OUT_DIR = Path(__file__).resolve().parent
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def truncate(text, limit=MAX_DOC):
    """Cut text to <= limit chars, preferring a paragraph, then a sentence, then a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for sep in ("\n\n", ".\n", ". "):
        i = cut.rfind(sep)
        if i >= limit // 2:
            return cut[:i + (sep != "\n\n")]
    return cut.rsplit(" ", 1)[0]


def signature(obj):
    """'(a, b=1)' via inspect.signature (without self/cls), or '' where it raises."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls") and not inspect.isclass(obj):
        sig = sig.replace(parameters=params[1:])
    return str(sig)


def document(header, obj, doc):
    if doc is None or len(doc) < MIN_DOC:
        return None
    return truncate(ADDRESS.sub("", f"{header}{signature(obj) if obj is not None else ''}\n\n{doc}"))


def public_names(mod):
    names = getattr(mod, "__all__", None)
    if names is None:
        owners = (mod.__name__, "_" + mod.__name__)
        names = [n for n in dir(mod) if getattr(getattr(mod, n), "__module__", None) in owners]
    return sorted(n for n in set(names) if not n.startswith("_"))


def module_docs(name):
    """All documents of one module, in order: module, then names sorted (methods after their class)."""
    mod = importlib.import_module(name)
    docs = [document(f"Module {name}", None, inspect.getdoc(mod))]
    for n in public_names(mod):
        obj = getattr(mod, n, None)
        if inspect.isclass(obj):
            docs.append(document(f"class {name}.{n}", obj, inspect.getdoc(obj)))
            for attr, raw in sorted(vars(obj).items()):
                func = getattr(raw, "__func__", raw)  # unwrap staticmethod / classmethod
                if not attr.startswith("_") and inspect.isroutine(func) and func.__doc__:
                    docs.append(document(f"{name}.{n}.{attr}", func, inspect.cleandoc(func.__doc__)))
        elif inspect.isroutine(obj):
            docs.append(document(f"{name}.{n}", obj, inspect.getdoc(obj)))
    kept, total = [], 0
    for d in docs:
        if d is not None and total + len(d) <= MAX_MODULE_CHARS:
            kept.append(d)
            total += len(d)
    return kept


def main():
    splits = {"corpus_train.jsonl": [], "corpus_eval.jsonl": []}
    mods = {"corpus_train.jsonl": [], "corpus_eval.jsonl": []}
    for name in MODULES:
        split = "corpus_eval.jsonl" if name in EVAL_MODULES else "corpus_train.jsonl"
        docs = module_docs(name)
        splits[split] += docs
        mods[split].append(f"{name}({len(docs)})")
    print(f"Python {sys.version.split()[0]}")
    for split, docs in splits.items():
        with open(OUT_DIR / split, "w", encoding="utf-8") as f:
            for text in docs:
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        print(f"{split}: {len(docs)} documents, {sum(map(len, docs))} chars, {len(mods[split])} modules")
        print("  " + ", ".join(mods[split]))


if __name__ == "__main__":
    main()

"""The one table of export formats and GGUF quantizations.

The recipe check (`export.formats`, `export.quants`), the CLI's `--to`/`--quant` choices and the
export pipeline all read this table, so a new format is added here and in the pipeline's writers
(`fasttune/export/pipeline.py`, which refuses to import if the two disagree). Standard library
only: config.py and cli.py import it without pulling in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fasttune.errors import ConfigError


@dataclass(frozen=True)
class Format:
    name: str
    help: str
    output: str
    """What it writes into the export folder; '{quant}' makes one output per quantization."""

    def outputs(self, out_dir: Path, quants: list[str]) -> list[Path]:
        """The paths this format writes (checked for existing files before any work)."""
        if "{quant}" in self.output:
            return [out_dir / self.output.format(quant=q) for q in quants]
        return [out_dir / self.output]


FORMATS = {f.name: f for f in (
    Format("adapter", "the LoRA adapter with tokenizer and chat template", "adapter"),
    Format("merged", "base + adapter merged into 16-bit weights, a plain HF folder", "merged"),
    Format("gguf", "one GGUF per quantization for llama.cpp / Ollama, with a Modelfile", "model-{quant}.gguf"),
)}

NO_ADAPTER = ("a fully fine-tuned run (model.full_finetune) has no LoRA adapter: export 'merged' (its weights in "
              "16-bit) or 'gguf'")

QUANTS = {
    "f16": "16-bit float, answers exactly as the merged model (written directly)",
    "bf16": "bfloat16 (written directly)",
    "q8_0": "8-bit (written directly)",
    "q4_k_m": "4-bit k-quant, the usual choice for small GPUs and CPUs (llama.cpp's quantizer)",
    "q5_k_m": "5-bit k-quant (llama.cpp's quantizer)",
    "q6_k": "6-bit k-quant (llama.cpp's quantizer)",
}


def parse_quants(text: str) -> list[str]:
    """'q4_k_m, f16' -> ['q4_k_m', 'f16']: the comma-separated list `--quant` and `Run.export(quant=...)` take."""
    return [q.strip() for q in text.split(",") if q.strip()]


def check(formats: list[str], quants: list[str], where: str = "export") -> None:
    """Raise ConfigError naming every unknown format or quantization, and the valid ones."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"{where}.formats: unknown {', '.join(unknown)}; valid: {', '.join(FORMATS)}")
    if not quants:
        raise ConfigError(f"{where}.quants must name at least one GGUF type; valid: {', '.join(QUANTS)}")
    bad = [q for q in quants if q not in QUANTS]
    if bad:
        raise ConfigError(f"{where}.quants: unknown GGUF quantization {', '.join(bad)}; valid: {', '.join(QUANTS)}")

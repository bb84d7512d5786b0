"""Where a q8_0 GGUF's greedy answers leave the merged model's: the rounding of the weights, or llama.cpp's
q8_0 arithmetic? One trained chat run, its merged model in float32 as the reference, against: the same
weights computed in bf16 and in fp16 (transformers), the weights rounded as q8_0 stores them and computed
in float32 (transformers), the export's q8_0 file, and a q8_0 file whose token embedding (SmolLM2's tied
output layer) stays f16 (both llama.cpp). Each is counted as export verification counts: tokens as
answered, up to the first difference, and next-token choices given the reference's answer so far.

    fasttune run recipes/chat_sft.py eval.drift=false "log.report_to=[]" "export.formats=[merged,gguf]" \\
        "export.quants=[f16,q8_0]" export.verify_prompts=40 export.verify_tokens=48 log.runs_dir=/tmp/q8
    python benchmarks/q8_agreement.py /tmp/q8/chat_sft-*     # writes benchmarks/results/q8-agreement-*.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import tempfile
from pathlib import Path

from provenance import record, write_result


def q8_0_rounded(weight):
    """`weight` as ggml's q8_0 stores it, back in float32: blocks of 32 along a row, each scaled by its
    largest magnitude / 127 (the scale itself in f16) and rounded to integers. Written here, not taken
    from llama.cpp, to compute those weights without llama.cpp's arithmetic, which rounds activations too."""
    import torch

    rows, cols = weight.shape
    blocks = weight.reshape(rows, cols // 32, 32)
    scale = (blocks.abs().amax(-1, keepdim=True) / 127).half().float()
    quantized = torch.where(scale > 0, (blocks / scale.clamp_min(1e-30)).round(), torch.zeros_like(blocks))
    return (quantized * scale).reshape(rows, cols)


def transformers_agreement(model, tokenizer, prompts, reference, max_new_tokens: int) -> dict:
    import torch

    from fasttune.chat_template import end_of_turn_ids

    stops, matched, chosen = end_of_turn_ids(tokenizer), 0, 0
    for text, ref in zip(prompts, reference):
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            new = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
            forced = model(torch.tensor([ids[0].tolist() + ref.tokens])).logits[0, ids.shape[1] - 1:-1].argmax(-1)
        new = new[:next((i for i, t in enumerate(new) if t in stops), len(new))]
        matched += next((i for i, (a, b) in enumerate(zip(new, ref.tokens)) if a != b), min(len(new), len(ref.tokens)))
        chosen += sum(int(a) == b for a, b in zip(forced.tolist(), ref.tokens))
    return {"matched_tokens": matched, "next_token_matches": chosen}


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune.export.verify import agreement, hf_greedy
    from fasttune.gguf_inference import collected_log, runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a chat run exported to merged, f16 and q8_0")
    parser.add_argument("--tokens", type=int, default=48, help="greedy tokens per prompt, at most")
    args = parser.parse_args()
    export = args.run / "export"
    merged, f16, q8 = export / "merged", export / "model-f16.gguf", export / "model-q8_0.gguf"
    tokenizer = AutoTokenizer.from_pretrained(merged)
    prompts = [item["text"] for item in json.loads((args.run / "eval_prompts.json").read_text())]
    reference = hf_greedy(merged, tokenizer, prompts, args.tokens)
    results = {"reference": "the merged model in float32 (transformers)",
               "total_tokens": sum(len(r.tokens) for r in reference), "prompts": len(prompts)}

    for name, dtype, rounded in (("bf16 compute", torch.bfloat16, False), ("fp16 compute", torch.float16, False),
                                 ("q8_0-rounded weights, float32 compute", torch.float32, True)):
        model = AutoModelForCausalLM.from_pretrained(merged, dtype=dtype).eval()
        if rounded:
            with torch.no_grad():
                for param in model.parameters():
                    if param.ndim == 2:
                        param.copy_(q8_0_rounded(param))
        results[f"transformers, {name}"] = transformers_agreement(model, tokenizer, prompts, reference, args.tokens)
        print(name, results[f"transformers, {name}"], flush=True)

    llama_cpp = runtime()
    with tempfile.TemporaryDirectory() as scratch:
        embedding_f16 = Path(scratch) / "q8_0-embedding-f16.gguf"
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, 2
        params.token_embedding_type = params.output_tensor_type = llama_cpp.GGML_TYPE_F16
        with collected_log():
            done = llama_cpp.llama_model_quantize(str(f16).encode(), str(embedding_f16).encode(), ctypes.byref(params))
            assert done == 0, f"llama_model_quantize returned {done}"
        for name, path in (("llama.cpp, the export's q8_0", q8), ("llama.cpp, q8_0 with an f16 token embedding",
                                                                  embedding_f16)):
            found = agreement(path, prompts, reference, args.tokens)
            results[name] = {k: found[k] for k in ("matched_tokens", "next_token_matches")}
            results[name]["size_mib"] = round(path.stat().st_size / 2**20, 1)
            print(name, results[name], flush=True)
    write_result("q8-agreement", {"benchmark": "q8_agreement", "run": str(args.run), "max_new_tokens": args.tokens,
                                  "results": results, "provenance": record()})


if __name__ == "__main__":
    main()

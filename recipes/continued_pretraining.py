"""Continued pre-training on the embedded SmolLM2-135M-Instruct: Python standard-library reference text.

Rows are {"text": ...}; every token is trained, and documents are packed end to end into full
rows with EOS between them. The corpus (recipes/data/corpus_*.jsonl, assembled offline by
make_corpus.py from the standard library's own docstrings) holds out whole modules, so the
held-out perplexity in eval.json measures the domain, not memorised text. As in Unsloth's
continued-pretraining notebooks, embed_tokens and lm_head train too, at a smaller learning rate.

    fasttune run recipes/continued_pretraining.py
    fasttune run recipes/continued_pretraining.py model.lora.train_embeddings=false train.embedding_lr=0
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.ContinuedPretraining(),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=32, alpha=32, train_embeddings=True)),
    data=Data(
        path="recipes/data/corpus_train.jsonl",
        eval="recipes/data/corpus_eval.jsonl",
        max_seq_length=256,
    ),
    train=Train(max_steps=40, batch_size=4, lr=2e-4, embedding_lr=2e-5),
    eval=Eval(samples=3, max_new_tokens=40),
)

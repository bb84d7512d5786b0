"""Generate the KTO demo's unpaired data from the DPO demo's pairs (make_preference_data.py).

KTO learns from single replies marked desirable or not, with no pairing. Each preference pair gives
one row here, its reply taken in turn: the chosen one (`"label": true`) from even rows, the rejected
one (`"label": false`) from odd rows, so no prompt is seen with both of its replies and the two kinds
are about equal in number:
    {"prompt": "What is the opposite of win?", "completion": "lose", "label": true}
The held-out split is the preference data's, whose question templates, facts and fillers the train
file never shows.

    python recipes/data/make_kto_data.py      # writes kto_train.jsonl and kto_eval.jsonl beside it
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    for split in ("train", "eval"):
        pairs = [json.loads(line) for line in (HERE / f"pref_{split}.jsonl").read_text().splitlines()]
        rows = [{"prompt": p["prompt"], "completion": p["chosen"] if i % 2 == 0 else p["rejected"], "label": i % 2 == 0}
                for i, p in enumerate(pairs)]
        with open(HERE / f"kto_{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(f"kto_{split}.jsonl: {len(rows)} rows, {sum(r['label'] for r in rows)} desirable")


if __name__ == "__main__":
    main()

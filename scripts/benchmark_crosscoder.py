"""Crosscoder pipeline throughput: activation collection tokens/s and peak memory vs the number of examples
(flat, thanks to streamed shards), and crosscoder training tokens/s. Each measurement runs in its own process,
so that its peak RSS is its own. Prints one JSON object.

Collection: scripts/collect_activations.py on the first N sample training examples (prompt + gold program),
both models on the CPU (default: the default model against itself, --ft_model for a LoRA), one layer's MLP
output. Its tokens/s counts rows written per second of the whole command, model loading included
(``load_s`` measures loading two models alone). Training: scripts/train_crosscoder.py on the rows collected
for the largest N.

    python scripts/benchmark_crosscoder.py [--num_examples 16,64,256] [--rows_per_shard 4096] [--layer 15] \\
        [--dict_size 2048 --k 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ft_model", default=None, help="default: the default model itself")
    p.add_argument("--data_file", default=str(REPO / "FinQA" / "sample" / "train.json"))
    p.add_argument("--num_examples", default="16,64,256")
    p.add_argument("--layer", type=int, default=15)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--rows_per_shard", type=int, default=4096,
                   help="collect_activations.py's flag; small, so that every N fills shards and the peak shows "
                        "whether memory stays flat")
    p.add_argument("--dict_size", type=int, default=2048)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--train_batch_size", type=int, default=512)
    p.add_argument("--train_steps", type=int, default=100)
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # one measurement, in-process
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child)))
        return
    from finqa_dsl.models.default_model import default_model_path

    base = str(default_model_path())
    ft = args.ft_model or base
    results = {"load": child(["load", base, ft]), "collection": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.num_examples.split(",")):
            out = Path(tmp) / f"acts-{n}"
            row = child(["collect", "--ft_model", ft, "--data_file", args.data_file, "--num_examples", str(n),
                         "--layer", str(args.layer), "--site", "mlp", "--batch_size", str(args.batch_size),
                         "--dtype", "float32", "--rows_per_shard", str(args.rows_per_shard),
                         "--output_dir", str(out)])
            manifest = json.loads((out / "manifest.json").read_text())
            rows = manifest["rows"]
            results["collection"].append({"examples": n, "rows": rows, "shards": len(manifest["shards"]),
                                          "seconds": row["seconds"], "tokens_per_s": rows / row["seconds"],
                                          "peak_rss_gb": row["peak_rss_gb"]})
        row = child(["train", str(out), "--output_dir", str(Path(tmp) / "cc"), "--dict_size", str(args.dict_size),
                     "--k", str(args.k), "--batch_size", str(args.train_batch_size), "--steps", str(args.train_steps),
                     "--warmup_steps", "10", "--threshold_start_step", str(args.train_steps // 2),
                     "--log_every", str(args.train_steps), "--checkpoint_every", str(10 * args.train_steps),
                     "--no_progress"])
        results["training"] = {"dict_size": args.dict_size, "k": args.k, "batch_size": args.train_batch_size,
                               "steps": args.train_steps, "seconds": row["seconds"],
                               "tokens_per_s": args.train_steps * args.train_batch_size / row["seconds"],
                               "peak_rss_gb": row["peak_rss_gb"]}
    print(json.dumps(results, indent=2))


def child(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *argv], check=True, stdout=subprocess.PIPE, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"measurement": argv[:1], **row}), file=sys.stderr)  # kept even if a later one is cut short
    return row


def run_child(argv: list[str]) -> dict:
    """One measurement: ``load BASE FT``, ``collect FLAGS..`` or ``train FLAGS..``; seconds and peak RSS."""
    import contextlib
    import os

    from finqa_dsl.models.loading import load_model, prepare_for_inference
    from scripts import collect_activations, train_crosscoder

    kind, rest = argv[0], argv[1:]
    start = time.perf_counter()  # after the imports: only the work is timed
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        if kind == "load":
            for name in rest:
                prepare_for_inference(load_model(name))
        elif kind == "collect":
            assert collect_activations.main(rest) == 0
        else:
            assert train_crosscoder.main(rest) == 0
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


if __name__ == "__main__":
    main()

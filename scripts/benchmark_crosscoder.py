"""Two benchmarks of the crosscoder.

``planted``: recovery of planted features and training tokens/s. Trains the crosscoder on a planted set
(``finqa_dsl.diffing.synthetic``: HARD by default) for each seed, scores it with ``synthetic.recovery`` and
prints one JSON row per seed (recovery per kind, relative norms, time, tokens/s) and a summary line. Any
``TrainConfig``/``CrosscoderConfig`` setting is a flag, so each row of the ablation table in BENCHMARKS.md is one
command. With ``--reference``, a minimal BatchTopK crosscoder (``reference_step``: plain Adam, no AuxK, no
schedule) trains on the same batches, interleaved step by step with ours, and the tokens/s ratio is reported
(a paired measurement, robust to a busy machine).

    python scripts/benchmark_crosscoder.py planted --seeds 0,1,2 --steps 4000 [--decoder_init_norm 1.0 ...]

The default (no subcommand): crosscoder pipeline throughput: activation collection tokens/s and peak memory vs
the number of examples (flat, thanks to streamed shards), and crosscoder training tokens/s. Each measurement
runs in its own process, so that its peak RSS is its own. Prints one JSON object.

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
    if len(sys.argv) > 1 and sys.argv[1] == "planted":
        planted_main(sys.argv[2:])
        return
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


def planted_main(argv: list[str]) -> None:
    from dataclasses import asdict, fields, replace

    import torch

    from finqa_dsl.diffing import synthetic
    from finqa_dsl.diffing.crosscoder import CrosscoderConfig
    from finqa_dsl.diffing.training import TrainConfig

    p = argparse.ArgumentParser(prog="benchmark_crosscoder.py planted")
    p.add_argument("--spec", default="HARD", choices=("HARD", "HARD_SMALL"))
    p.add_argument("--seeds", default="0,1,2", help="training seeds (the data are the same planted set)")
    p.add_argument("--data_seed", type=int, default=0)
    p.add_argument("--dict_size", type=int, default=512)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", action="store_true", help="also time the minimal reference, interleaved")
    p.add_argument("--profile", type=int, default=0,
                   help="profile this many of our training steps (after 20 warm-up steps) and print where the time "
                        "goes (torch.profiler, top operators by self CPU time) instead of training")
    model_defaults = CrosscoderConfig(d_model=1, dict_size=1)
    for name in ("decoder_init_norm", "same_init_for_all_models", "init_with_transpose"):
        p.add_argument(f"--{name}", type=_typed(getattr(model_defaults, name)), default=getattr(model_defaults, name))
    # The planted benchmark's recipe: the library's defaults (the published recipe) except a rate of 3e-3 (the
    # published rule gives 1.1e-3 at 512 latents, too slow for 4,000 steps), 200 warm-up steps and no clipping;
    # "--lr auto --warmup_steps 1000 --grad_clip_norm 1" gives the published values (BENCHMARKS.md).
    train_defaults = dict(steps=4000, batch_size=1024, lr=3e-3, warmup_steps=200, grad_clip_norm=0.0,
                          dead_tokens=100_000, log_every=500, checkpoint_every=10**9)
    for field in fields(TrainConfig):
        default = train_defaults.get(field.name, field.default)
        kind = (lambda v: None if v == "auto" else float(v)) if field.name == "lr" else _typed(default)
        p.add_argument(f"--{field.name}", type=kind, default=default)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = replace(getattr(synthetic, args.spec), seed=args.data_seed)
    planted = synthetic.PlantedActivations(spec)
    if args.profile:
        model = CrosscoderConfig(d_model=spec.d_model, dict_size=args.dict_size, k=args.k,
                                 **{n: getattr(args, n) for n in ("decoder_init_norm", "same_init_for_all_models",
                                                                 "init_with_transpose")})
        train = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        print(profile_steps(planted, model, train, args.profile))
        return
    rows = []
    for seed in (int(v) for v in args.seeds.split(",")):
        model = CrosscoderConfig(d_model=spec.d_model, dict_size=args.dict_size, k=args.k,
                                 **{n: getattr(args, n) for n in ("decoder_init_norm", "same_init_for_all_models",
                                                                 "init_with_transpose")})
        train = TrainConfig(**{**{f.name: getattr(args, f.name) for f in fields(TrainConfig)}, "seed": seed})
        row = run_planted(planted, model, train, reference=args.reference)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"summary": [synthetic.recovery_line(r["recovery"]) for r in rows],
                      "ok": [r["recovery"]["ok"] for r in rows], "spec": args.spec,
                      "crosscoder": asdict(model), "training": {k: v for k, v in asdict(train).items() if k != "seed"},
                      **({"reference_speed_ratio": [r["speed_ratio"] for r in rows]} if args.reference else {})}))


def run_planted(planted, model, train, *, reference: bool = False) -> dict:
    """Train on the planted set (ours, and the reference interleaved step by step when asked); recovery and
    tokens/s of each."""

    from finqa_dsl.diffing import synthetic
    from finqa_dsl.diffing.training import CrosscoderTrainer

    trainer = CrosscoderTrainer(model, train, planted)
    ref = Reference(model.d_model, model.dict_size, model.k, train.learning_rate(model.dict_size), train.seed) \
        if reference else None
    times = {"ours": 0.0, "reference": 0.0}
    # Our trainer's own loop, step by step, so that the reference can run between two of its steps.
    original = trainer._train_step

    def timed_step(raw, window):
        start = time.perf_counter()
        original(raw, window)
        times["ours"] += time.perf_counter() - start
        if ref is not None:
            start = time.perf_counter()
            ref.step(raw)
            times["reference"] += time.perf_counter() - start

    trainer._train_step = timed_step
    start = time.perf_counter()
    cc = trainer.train(progress=False)
    wall = time.perf_counter() - start
    tokens = train.steps * train.batch_size
    report = synthetic.recovery(cc.W_dec, planted)
    row = {"seed": train.seed, "steps": train.steps, "line": synthetic.recovery_line(report),
           "ok": report["ok"], "wall_s": round(wall, 1), "tokens_per_s": round(tokens / times["ours"]),
           "convergence": trainer.summary,
           "recovery": {k: v for k, v in report.items()},
           "exclusive": [{k: f[k] for k in ("cosine", "delta", "class")} for kind in ("ft_only", "base_only")
                         for f in report[kind]["features"]]}
    if ref is not None:
        ref_report = synthetic.recovery(ref.decoder(), planted)
        row.update(reference_tokens_per_s=round(tokens / times["reference"]),
                   speed_ratio=round(times["reference"] / times["ours"], 3),
                   reference_line=synthetic.recovery_line(ref_report))
    return row


def profile_steps(planted, model, train, steps: int) -> str:
    """torch.profiler's table of ``steps`` training steps (after 20 unprofiled ones) on pre-drawn batches."""
    from torch.profiler import profile

    from finqa_dsl.diffing.training import CrosscoderTrainer, _Window

    trainer = CrosscoderTrainer(model, train, planted)
    trainer._initialise_from_data()
    stream = planted.batches(train.batch_size, seed=train.seed)
    batches = [next(stream)["activations"] for _ in range(10)]
    window = _Window(model.n_models, trainer.device)
    for i in range(20):
        trainer._train_step(batches[i % 10], window)
        trainer.step += 1
    with profile() as prof:
        start = time.perf_counter()
        for i in range(steps):
            trainer._train_step(batches[i % 10], window)
            trainer.step += 1
        seconds = time.perf_counter() - start
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return f"{steps} steps, {seconds / steps * 1000:.1f} ms/step (profiled)\n{table}"


class Reference:
    """A minimal BatchTopK crosscoder (about 40 lines): the yardstick for tokens/s. Same normalisation idea
    (scale each model to mean norm sqrt(d)), decoder init as the published recipe, plain Adam at a constant rate,
    no AuxK, no schedule, no threshold, no statistics."""

    def __init__(self, d: int, n: int, k: int, lr: float, seed: int, norm: float = 0.1):
        import torch

        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n, 2, d, generator=g)
        self.W_dec = (norm * w / w.norm(dim=-1, keepdim=True)).requires_grad_()
        self.W_enc = self.W_dec.detach().permute(1, 2, 0).clone().requires_grad_()
        self.b_enc = torch.zeros(n, requires_grad=True)
        self.b_dec = torch.zeros(2, d, requires_grad=True)
        self.k, self.scale = k, None
        self.opt = torch.optim.Adam([self.W_dec, self.W_enc, self.b_enc, self.b_dec], lr=lr)

    def step(self, raw):
        import torch

        if self.scale is None:
            self.scale = raw.shape[-1] ** 0.5 / raw.norm(dim=-1).mean(dim=0)
        x = raw * self.scale[None, :, None]
        pre = torch.relu(torch.einsum("bmd,mdn->bn", x, self.W_enc) + self.b_enc)
        score = (pre * self.W_dec.norm(dim=-1).sum(-1)).flatten()
        mask = torch.zeros_like(score).scatter_(0, score.topk(self.k * x.shape[0]).indices, 1.0).view_as(pre)
        x_hat = torch.einsum("bn,nmd->bmd", pre * mask, self.W_dec) + self.b_dec
        loss = (x - x_hat).pow(2).sum(dim=(1, 2)).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def decoder(self):
        return self.W_dec.detach()


def _typed(default):
    if isinstance(default, bool):
        return lambda text: text.lower() in ("1", "true", "yes")
    return type(default) if default is not None else int


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

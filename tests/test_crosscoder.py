"""The crosscoder against known answers: planted features, BatchTopK vs L1, threshold inference, AuxK and
dead latents, resume, the relative-norm classes, Latent Scaling, and the activation shards."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from finqa_dsl.diffing import files, synthetic
from finqa_dsl.diffing.analysis import (
    Thresholds,
    class_ids,
    classify,
    closed_form_beta,
    convergence_warning,
    decoder_cosine,
    latent_statistics,
    latent_table,
    latent_table_markdown,
    promoted_tokens,
    relative_norm,
    summarize,
    write_report,
)
from finqa_dsl.diffing.crosscoder import (
    Crosscoder,
    CrosscoderConfig,
    batch_topk_mask,
    geometric_median,
    load_crosscoder,
)
from finqa_dsl.diffing.shards import ActivationShards, ShardWriter
from finqa_dsl.diffing.synthetic import PlantedActivations, PlantedSpec, recovery
from finqa_dsl.diffing.training import CrosscoderTrainer, TrainConfig

D, DICT, K = 32, 128, 4
PLANTED_TRAINING = dict(steps=2000, batch_size=256, lr=3e-3, warmup_steps=50, threshold_start_step=1000,
                        dead_tokens=256 * 100, log_every=500, checkpoint_every=10_000)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is faster than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(data, sparsity: str, **overrides):
    settings = {**PLANTED_TRAINING, **overrides}
    l1_coeff = settings.pop("l1_coeff", 1.0)
    trainer = CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=DICT, k=K, sparsity=sparsity),
                                TrainConfig(l1_coeff=l1_coeff, **settings), data)
    return trainer.train(progress=False)


def _held_out(data, batches=8, batch_size=512):
    stream = data.batches(batch_size, seed=12345)
    return [next(stream)["activations"] for _ in range(batches)]


@pytest.fixture(scope="module")
def planted():
    return PlantedActivations(PlantedSpec(d_model=D))


@pytest.fixture(scope="module")
def topk_crosscoder(planted):
    torch.manual_seed(0)
    return _train(planted, "batchtopk")


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@pytest.mark.slow
def test_planted_features_are_recovered_and_classified(planted, topk_crosscoder):
    cc = topk_crosscoder
    w = cc.W_dec.detach()
    delta = relative_norm(cc.decoder_norms().detach())
    classes = classify(delta)
    for direction in planted.ft_only:
        cosine = _unit(w[:, 1]) @ direction
        best = int(cosine.argmax())
        assert cosine[best] >= 0.9 and delta[best] >= 0.9, (float(cosine[best]), float(delta[best]))
    for direction in planted.base_only:
        cosine = _unit(w[:, 0]) @ direction
        best = int(cosine.argmax())
        assert cosine[best] >= 0.9 and delta[best] <= 0.1, (float(cosine[best]), float(delta[best]))
    # Shared features: matched in both models' decoders by one latent, and that latent classed shared.
    cos_base = _unit(w[:, 0]) @ planted.shared_base.T  # (dict, n_shared)
    cos_ft = _unit(w[:, 1]) @ planted.shared_ft.T
    best = cos_base.argmax(dim=0)
    found = [j for j in range(planted.spec.n_shared)
             if cos_base[best[j], j] >= 0.9 and cos_ft[best[j], j] >= 0.9]
    assert len(found) >= 0.9 * planted.spec.n_shared, len(found)
    assert all(classes[int(best[j])] == "shared" for j in found)

    # The summary agrees, and Latent Scaling finds the planted fine-tuned-only latents genuine: the base model
    # has the direction neither in its error nor in its reconstruction (up to the data's mean, which the
    # reconstruction target keeps, as in the paper).
    summary = summarize(cc, _held_out(planted))
    assert summary["counts"]["ft_only"] >= planted.spec.n_ft_only
    assert summary["counts"]["base_only"] >= planted.spec.n_base_only
    planted_latents = {int((_unit(w[:, 1]) @ d).argmax()) for d in planted.ft_only}
    rows = {row["latent"]: row for row in summary["latent_scaling"]["per_latent"]}
    for latent in planted_latents:
        assert abs(rows[latent]["nu_error"]) < 0.1 and abs(rows[latent]["nu_reconstruction"]) < 0.3, rows[latent]
        assert not rows[latent]["artefact"]
        assert rows[latent]["beta_error_ft"] == pytest.approx(1.0, abs=0.1)


@pytest.mark.slow
def test_batchtopk_reconstructs_better_than_l1_at_equal_l0(planted, topk_crosscoder):
    held_out = _held_out(planted)
    l1 = _train(planted, "l1", l1_coeff=2.0)
    topk_stats = latent_statistics(topk_crosscoder, held_out)
    l1_stats = latent_statistics(l1, held_out)
    # The L1 crosscoder is given at least as many active latents per token, and still loses.
    assert l1_stats.l0 >= topk_stats.l0, (l1_stats.l0, topk_stats.l0)
    for topk_fve, l1_fve in zip(topk_stats.fve, l1_stats.fve, strict=True):
        assert topk_fve > l1_fve + 0.03, (topk_stats.fve, l1_stats.fve)


@pytest.mark.slow
def test_threshold_makes_a_token_code_independent_of_its_batch_mates(planted, topk_crosscoder):
    cc = topk_crosscoder.eval()
    assert cc.has_threshold
    x = cc.normalize(_held_out(planted, batches=1)[0])
    with torch.no_grad():
        in_batch = cc.encode(x)
        alone = torch.cat([cc.encode(x[i:i + 1]) for i in range(64)])
        # Same support; values equal up to the float rounding of a different matmul shape.
        assert torch.equal(in_batch[:64] > 0, alone > 0)
        torch.testing.assert_close(in_batch[:64], alone)
        # The batch rule does depend on batch-mates (so the check above is not vacuous) ...
        batch_rule_alone = torch.cat([cc.encode(x[i:i + 1], use_threshold=False) for i in range(64)])
        assert not torch.equal(cc.encode(x, use_threshold=False)[:64] > 0, batch_rule_alone > 0)
    # ... and the threshold keeps about k latents per token.
    assert latent_statistics(cc, [x / cc.input_scale[None, :, None]]).l0 == pytest.approx(K, rel=0.35)


class _IdenticalModels:
    """Planted data with the fine-tuned model replaced by a copy of the base model."""

    def __init__(self, data):
        self.data = data

    def batches(self, batch_size, *, seed, start_batch=0):
        for batch in self.data.batches(batch_size, seed=seed, start_batch=start_batch):
            batch["activations"][:, 1] = batch["activations"][:, 0]
            yield batch


def test_identical_models_give_only_shared_latents_with_identical_decoders(planted):
    """Started from the same direction in both models (``same_init_for_all_models``), a crosscoder of two
    identical models keeps identical decoders: the update is symmetric in the models."""
    config = TrainConfig(steps=60, batch_size=128, lr=3e-3, warmup_steps=10, dead_tokens=128 * 10,
                         threshold_start_step=30, log_every=60)
    cc = CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=64, k=K, same_init_for_all_models=True), config,
                           _IdenticalModels(planted)).train(progress=False)
    assert classify(relative_norm(cc.decoder_norms().detach())) == ["shared"] * 64
    torch.testing.assert_close(decoder_cosine(cc), torch.ones(64, dtype=torch.float64))


def _suppressed_trainer(data, auxk_weight: float, steps: int = 150):
    config = TrainConfig(steps=steps, batch_size=128, lr=3e-3, warmup_steps=10, auxk_weight=auxk_weight,
                         dead_tokens=128 * 20, threshold_start_step=10_000, log_every=steps)
    trainer = CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=64, k=K), config, data)
    with torch.no_grad():  # latents 0-15 start with tiny decoders: never selected by BatchTopK
        trainer.crosscoder.W_dec[:16] *= 1e-4
    return trainer


def test_auxk_revives_dead_latents_and_dead_tracking_counts_tokens(planted):
    rows = []
    without = _suppressed_trainer(planted, auxk_weight=0.0)
    without.on_log = rows.append
    without.train(progress=False)
    # Without AuxK a never-selected latent gets no gradient: dead for the whole run, every token counted.
    assert torch.equal(without.tokens_since_fired[:16], torch.full((16,), 150 * 128))
    assert rows[-1]["dead_latents"] == int((without.tokens_since_fired >= 128 * 20).sum()) >= 16

    with_auxk = _suppressed_trainer(planted, auxk_weight=1.0)
    with_auxk.train(progress=False)
    revived = int((with_auxk.tokens_since_fired[:16] < 128 * 20).sum())
    assert revived >= 8, with_auxk.tokens_since_fired[:16]


def test_resume_from_checkpoint_matches_an_uninterrupted_run(planted, tmp_path):
    def trainer(steps, folder):
        # No decay: the 25-step run would decay its rate from step 20, which a 40-step run does not do.
        config = TrainConfig(steps=steps, batch_size=64, lr=3e-3, warmup_steps=10, threshold_start_step=10,
                             dead_tokens=64 * 5, log_every=10, checkpoint_every=15, seed=3, decay_start=1.0)
        return CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=64, k=K), config, planted, folder)

    whole = trainer(40, tmp_path / "whole").train(progress=False)
    trainer(25, tmp_path / "split").train(progress=False)  # stops at 25 (checkpoint at 15 and at 25)
    with open(tmp_path / "split" / files.TRAIN_LOG, "a") as log:  # a crash after logging step 30
        log.write(json.dumps({"step": 30, "loss": 0.0}) + "\n")
    resumed_trainer = trainer(40, tmp_path / "split")
    resumed = resumed_trainer.train(resume=True, progress=False)
    assert resumed_trainer.step == 40
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    saved = load_crosscoder(tmp_path / "split" / files.CROSSCODER)
    assert torch.equal(saved.W_dec, resumed.W_dec) and saved.has_threshold
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / files.TRAIN_LOG).read_text().splitlines()]
    assert steps == [10, 20, 25, 30, 40]
    assert json.loads((tmp_path / "split" / files.TRAIN_LOG).read_text().splitlines()[3])["loss"] > 0
    with pytest.raises(ValueError, match="lr"):  # a checkpoint is only resumed with the same settings
        other = CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=64, k=K),
                                  TrainConfig(steps=50, batch_size=64, lr=1e-3, seed=3), planted, tmp_path / "split")
        other.train(resume=True, progress=False)


def test_relative_norm_formula_and_class_thresholds():
    norms = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [1.0, 0.5], [0.5, 1.0], [0.0, 0.0],
                          [1.0, 0.25], [0.25, 1.0], [1.0, 0.8], [0.8, 1.0]])
    delta = relative_norm(norms)
    expected = [0.0, 1.0, 0.5, 0.25, 0.75, math.nan, 0.125, 0.875, 0.4, 0.6]
    for got, want in zip(delta.tolist(), expected, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    assert classify(delta) == ["base_only", "ft_only", "shared", "other", "other", "other",
                               "other", "other", "shared", "shared"]
    assert classify(torch.tensor([0.1, 0.9, 0.4, 0.6, 0.11, 0.89], dtype=torch.float64)) == [
        "base_only", "ft_only", "shared", "shared", "other", "other"]
    loose = Thresholds(base_only_max=0.2, shared_min=0.3, shared_max=0.7, ft_only_min=0.85)
    assert classify(delta, loose) == ["base_only", "ft_only", "shared", "other", "other", "other",
                                      "base_only", "ft_only", "shared", "shared"]
    with pytest.raises(ValueError):
        Thresholds(shared_min=0.05)


def _hand_built_crosscoder(with_base_copy: bool) -> Crosscoder:
    """Latent 0: fine-tuned only along e0 (reads the ft model); latent 1: shared along e1; latent 2 (when
    ``with_base_copy``): a base-only latent along e0 that reads the base model."""
    cc = Crosscoder(CrosscoderConfig(d_model=8, dict_size=3, sparsity="l1")).eval()
    with torch.no_grad():
        cc.W_enc.zero_()
        cc.W_dec.zero_()
        cc.W_enc[1, 0, 0] = 1.0
        cc.W_dec[0, 1, 0] = 1.0
        cc.W_enc[:, 1, 1] = 0.5
        cc.W_dec[1, :, 1] = 1.0
        if with_base_copy:
            cc.W_enc[0, 0, 2] = 1.0
            cc.W_dec[2, 0, 0] = 1.0
    return cc


def _latent_scaling_data(base_share: float, n: int = 4000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    f0 = torch.rand(n, generator=g) * (torch.rand(n, generator=g) < 0.3)
    g1 = torch.rand(n, generator=g)
    x = torch.zeros(n, 2, 8)
    x[:, 1, 0] = f0
    x[:, 0, 0] = base_share * f0
    x[:, :, 1] = g1[:, None]
    x[:, 0, 5] = torch.randn(n, generator=g)  # base noise no latent reconstructs (orthogonal to e0)
    return x


def test_latent_scaling_betas_on_constructed_cases():
    # Complete shrinkage: the base model has 0.8 x the ft-only latent's direction, but its base decoder is 0.
    x = _latent_scaling_data(0.8)
    stats = latent_statistics(_hand_built_crosscoder(with_base_copy=False), x.split(1000), [0])
    assert stats.betas["error_base"][0] == pytest.approx(0.8, abs=1e-5)
    assert stats.betas["error_ft"][0] == pytest.approx(1.0, abs=1e-5)
    assert stats.betas["reconstruction_base"][0] == pytest.approx(0.0, abs=1e-5)
    assert stats.betas["reconstruction_ft"][0] == pytest.approx(1.0, abs=1e-5)
    assert stats.ratios()["error"][0] == pytest.approx(0.8, abs=1e-5)
    summary = summarize(_hand_built_crosscoder(with_base_copy=False), x.split(1000))
    assert summary["counts"]["ft_only"] == 1 and summary["latent_scaling"]["artefacts"] == 1
    # Latent decoupling: another latent reconstructs that share in the base model; the error ratio is 0.
    stats = latent_statistics(_hand_built_crosscoder(with_base_copy=True), x.split(1000), [0])
    assert stats.ratios()["reconstruction"][0] == pytest.approx(0.8, abs=1e-5)
    assert stats.ratios()["error"][0] == pytest.approx(0.0, abs=1e-5)


def test_closed_form_beta_is_the_least_squares_scalar():
    g = torch.Generator().manual_seed(1)
    f, d = torch.rand(500, generator=g).double(), torch.randn(6, generator=g).double()
    y = 0.37 * f[:, None] * d + 0.3 * torch.randn(500, 6, generator=g).double()
    design = (f[:, None] * d).reshape(-1, 1)
    expected = torch.linalg.lstsq(design, y.reshape(-1, 1)).solution.item()
    beta = closed_form_beta(d[None], (f[:, None] * y).sum(dim=0)[None], f.pow(2).sum()[None])
    assert beta.item() == pytest.approx(expected, rel=1e-9)
    assert math.isnan(closed_form_beta(d[None], torch.zeros(1, 6).double(), torch.zeros(1).double()).item())


def test_geometric_median_resists_outliers():
    points = torch.cat([torch.randn(99, 4, generator=torch.Generator().manual_seed(0)) * 0.01,
                        torch.full((1, 4), 1000.0)])
    assert geometric_median(points).norm() < 0.1 < points.mean(dim=0).norm()


def test_report_files(tmp_path):
    x = _latent_scaling_data(0.8)
    written = write_report(summarize(_hand_built_crosscoder(with_base_copy=False), x.split(1000)), tmp_path)
    assert {p.name for p in written} == {files.SUMMARY, files.DELTA_PLOT, files.COSINE_PLOT, files.SCALING_PLOT}
    summary = json.loads((tmp_path / files.SUMMARY).read_text())
    assert summary["counts"] == {"base_only": 0, "shared": 1, "ft_only": 1, "other": 1}
    assert summary["top_latents"]["ft_only"][0]["latent"] == 0
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in (files.DELTA_PLOT, files.COSINE_PLOT))


def _write_shards(folder, rows=1000, rows_per_shard=128):
    g = torch.Generator().manual_seed(0)
    activations = torch.randn(rows, 2, 6, generator=g)
    writer = ShardWriter(folder, d_model=6, rows_per_shard=rows_per_shard, metadata={"layer": 3})
    for start in range(0, rows, 37):
        stop = min(rows, start + 37)
        writer.add(activations[start:stop], torch.arange(start, stop) % 50, torch.arange(start, stop),
                   torch.arange(start, stop) % 7)
        if start == 296:
            partial = json.loads((folder / files.MANIFEST).read_text())
            assert partial["complete"] is False and partial["rows"] == 256
    writer.close()
    return activations.to(torch.bfloat16)


def test_shards_round_trip(tmp_path):
    activations = _write_shards(tmp_path)
    shards = ActivationShards(tmp_path)
    assert shards.manifest["complete"] and shards.manifest["metadata"] == {"layer": 3}
    assert shards.rows == 1000 and shards.shard_rows == [128] * 7 + [104]
    loaded = [shards.load_shard(i) for i in range(8)]
    assert torch.equal(torch.cat([s["activations"] for s in loaded]), activations)
    assert torch.equal(torch.cat([s["example_ids"] for s in loaded]), torch.arange(1000))
    assert torch.equal(torch.cat([s["positions"] for s in loaded]), torch.arange(1000) % 7)
    with pytest.raises(FileNotFoundError, match="manifest"):
        ActivationShards(tmp_path / "absent")


def test_shuffled_reading_covers_every_row_once_per_epoch(tmp_path):
    activations = _write_shards(tmp_path)
    shards = ActivationShards(tmp_path, shards_in_memory=3)
    columns = ("activations", "example_ids")
    orders = []
    for epoch in (0, 1):
        chunks = list(shards.epoch(epoch, seed=5, columns=columns))
        ids = torch.cat([c["example_ids"] for c in chunks])
        assert sorted(ids.tolist()) == list(range(1000))
        assert torch.equal(torch.cat([c["activations"] for c in chunks]), activations[ids])
        orders.append(ids)
    assert not torch.equal(orders[0], torch.arange(1000)) and not torch.equal(orders[0], orders[1])
    again = torch.cat([c["example_ids"] for c in shards.epoch(0, seed=5, columns=columns)])
    assert torch.equal(again, orders[0])

    stream = shards.batches(64, seed=5, columns=columns)
    batches = [next(stream)["example_ids"] for _ in range(40)]  # 15 whole batches per epoch
    assert all(len(b) == 64 for b in batches)
    first_epoch = torch.cat(batches[:15])
    assert len(set(first_epoch.tolist())) == 960 and torch.equal(first_epoch, orders[0][:960])
    assert torch.equal(torch.cat(batches[15:30]), orders[1][:960])
    for start in (7, 15, 22):
        resumed = shards.batches(64, seed=5, start_batch=start, columns=columns)
        assert torch.equal(next(resumed)["example_ids"], batches[start])


def test_train_and_analyze_scripts_on_planted_shards(planted, tmp_path, capsys):
    from scripts import analyze_crosscoder, train_crosscoder

    sample = planted.sample(6000, torch.Generator().manual_seed(1))
    with ShardWriter(tmp_path / "acts", d_model=D, rows_per_shard=1000, dtype="float16") as writer:
        rows = torch.arange(6000)
        writer.add(sample["activations"], sample["token_ids"], rows // 100, rows % 100)
    out = tmp_path / "train"
    common = [str(tmp_path / "acts"), "--output_dir", str(out), "--dict_size", "64", "--k", "4",
              "--batch_size", "200", "--lr", "3e-3", "--warmup_steps", "10", "--threshold_start_step", "20",
              "--log_every", "20", "--checkpoint_every", "20", "--no_progress"]
    assert train_crosscoder.main([*common, "--tokens", "8000"]) == 0  # 40 steps: more than one epoch
    assert train_crosscoder.main([*common, "--steps", "60", "--resume"]) == 0
    log = [json.loads(line) for line in (out / files.TRAIN_LOG).read_text().splitlines()]
    assert [row["step"] for row in log] == [20, 40, 60]
    assert {"fve_base", "fve_ft", "l0", "dead_latents", "auxk_loss"} <= set(log[-1])
    assert log[-1]["fve_base"] > log[0]["fve_base"]

    assert analyze_crosscoder.main([str(out), str(tmp_path / "acts"), "--output_dir", str(tmp_path / "report"),
                                    "--tokens", "2000", "--batch_size", "500", "--dashboard_latents", "0"]) == 0
    summary = json.loads((tmp_path / "report" / files.SUMMARY).read_text())
    assert summary["tokens"] == 2000 and sum(summary["counts"].values()) == 64
    assert (tmp_path / "report" / files.DELTA_PLOT).is_file()
    assert "fine-tuned-only latents flagged" in capsys.readouterr().out


def test_scripts_report_user_errors_in_one_line(tmp_path, capsys):
    import subprocess
    import sys

    from scripts import analyze_crosscoder, train_crosscoder

    result = subprocess.run([sys.executable, "scripts/train_crosscoder.py", str(tmp_path / "absent"),
                             "--output_dir", str(tmp_path / "o"), "--steps", "5"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert "absent: no such folder (and not a Hugging Face Hub id): collect them" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "scripts/train_crosscoder.py", str(tmp_path / "empty"),
                             "--output_dir", str(tmp_path / "o"), "--steps", "5"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "manifest.json" in result.stderr

    _write_shards(tmp_path / "acts", rows=300)
    train = [str(tmp_path / "acts"), "--output_dir", str(tmp_path / "o"), "--steps", "5", "--batch_size", "100"]
    cases = [
        (train_crosscoder, [*train, "--dict_size", "8", "--k", "9"], "--k 9 exceeds --dict_size 8"),
        (train_crosscoder, [*train, "--batch_size", "500"], "--batch_size 500 exceeds the 300 rows"),
        (analyze_crosscoder, [str(tmp_path / "o"), str(tmp_path / "acts"), "--output_dir", str(tmp_path / "r")],
         "train one with scripts/train_crosscoder.py"),
        (analyze_crosscoder, [str(tmp_path / "o"), str(tmp_path / "acts"), "--output_dir", str(tmp_path / "r"),
                              "--shared_min", "0.05"], "base_only_max < shared_min"),
    ]
    for script, argv, message in cases:
        assert script.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


# --- the planted benchmark, the published initialisation and recipe, convergence ------------------------------


# The hard small planted set (synthetic.HARD_SMALL: 64 shared, 4 fine-tuned-only, 2 base-only and 2 rotated
# features in 32 dimensions, each on 2% of tokens) and a budget of 2,000 steps of 1,024 tokens. k = 2 for about
# 1.4 active features per token (the benchmark's ratio, 8 for 5.5). The rest is the library's defaults, the
# published recipe, except the rate (3e-3: the published rule, 2e-4 / sqrt(192 / 2**14), gives 2.2e-3, too slow
# for this budget), a 200-step warm-up and no clipping (see BENCHMARKS.md, "Crosscoder recovery").
HARD_TRAINING = dict(steps=2000, batch_size=1024, lr=3e-3, warmup_steps=200, grad_clip_norm=0.0,
                     threshold_start_step=500, dead_tokens=100_000, log_every=500, checkpoint_every=10**9)


@pytest.mark.slow
def test_hard_planted_set_is_recovered_from_the_published_initialisation():
    """Every exclusive feature found with the right relative norm and >= 95% of the shared ones classed shared.

    Fails with the initialisation the trainer had before (each latent starting with the same direction in both
    models at norm 1.0): run with CrosscoderConfig's defaults put back (``decoder_init_norm=1.0,
    same_init_for_all_models=True``) it classed 60 of the 64 shared features shared (93.8%; 63 with the
    published start) and left 2.8% of an exclusive latent's norm in the other model (0.9% with the published
    start). On the benchmark's bigger set the old start finds none of the 8 fine-tuned-only features."""
    planted = PlantedActivations(synthetic.HARD_SMALL)
    trainer = CrosscoderTrainer(CrosscoderConfig(d_model=32, dict_size=192, k=2), TrainConfig(**HARD_TRAINING),
                                planted)
    cc = trainer.train(progress=False)
    report = recovery(cc.W_dec, planted)
    line = synthetic.recovery_line(report)
    assert report["ft_only"]["right"] == 4 and report["base_only"]["right"] == 2, line
    assert report["shared"]["right"] >= 0.95 * 64, line
    for kind in ("ft_only", "base_only"):
        for feature in report[kind]["features"]:
            assert feature["cosine"] >= 0.99 and abs(feature["delta"] - (kind == "ft_only")) < 0.05, feature


def _perfect_decoder(planted, extra=16):
    """A decoder with one latent per planted feature, in the models it lives in (the other model's vector tiny),
    plus random latents."""
    rows = []
    for base, ft in planted.directions().values():
        n = (base if base is not None else ft).shape[0]
        for j in range(n):
            b = base[j] if base is not None else 0.01 * torch.randn(planted.spec.d_model)
            f = ft[j] if ft is not None else 0.01 * torch.randn(planted.spec.d_model)
            rows.append(torch.stack([b, f]))
    rows += list(torch.randn(extra, 2, planted.spec.d_model, generator=torch.Generator().manual_seed(0)))
    return torch.stack(rows)


def test_recovery_checker_scores_planted_directions():
    planted = PlantedActivations(synthetic.HARD_SMALL)
    spec = planted.spec
    decoder = _perfect_decoder(planted)
    report = recovery(decoder, planted)
    assert report["ok"]
    for kind, total in (("shared", spec.n_shared), ("ft_only", spec.n_ft_only), ("base_only", spec.n_base_only),
                        ("rotated", spec.n_rotated)):
        assert report[kind]["total"] == report[kind]["found"] == report[kind]["right"] == total
    rotated = report["rotated"]["features"][0]
    assert rotated["decoder_cosine"] == pytest.approx(spec.rotated_cosine, abs=1e-4) == rotated["planted_cosine"]
    assert synthetic.recovery_line(report) == "ft_only 4/4 base_only 2/2 rotated 2/2 shared 100.0%"

    # A fine-tuned-only feature whose latent has the same norm in both models is found but has the wrong norm.
    first_ft = spec.n_shared
    decoder[first_ft, 0] = decoder[first_ft, 1].flip(0)
    report = recovery(decoder, planted)
    assert report["ft_only"]["found"] == 4 and report["ft_only"]["right"] == 3 and not report["ok"]
    # A shared feature missing from the decoder is not found.
    decoder = _perfect_decoder(planted)
    decoder[0] = torch.randn(2, spec.d_model)
    assert recovery(decoder, planted)["shared"]["found"] == spec.n_shared - 1


def test_planted_generator_kinds_rarity_and_scales():
    spec = synthetic.HARD_SMALL
    planted = PlantedActivations(spec)
    assert float(planted.rotated_base.mul(planted.rotated_ft).sum(-1).mean()) == pytest.approx(spec.rotated_cosine)
    scales = planted.shared_ft_scale
    assert 1 / 1.2 - 1e-6 <= float(scales.min()) < float(scales.max()) <= 1.2 + 1e-6
    # A fine-tuned-only feature shows up only in the fine-tuned model, on about 2% of tokens.
    alone = PlantedActivations(replace(spec, n_shared=0, n_rotated=0, n_base_only=0, n_ft_only=1))
    x = alone.sample(20_000, torch.Generator().manual_seed(0))["activations"]
    along = x @ alone.ft_only[0]
    assert float((along[:, 1] / spec.ft_scale > 0.4).double().mean()) == pytest.approx(0.02, abs=0.005)
    assert float((along[:, 0].abs() > 0.4).double().mean()) == 0.0
    # The default spec's data did not change when the new kinds were added (the dashboard test depends on it).
    old = PlantedActivations(PlantedSpec(d_model=D)).sample(4, torch.Generator().manual_seed(3))
    assert old["activations"].shape == (4, 2, D)


def test_initialisation_follows_the_published_recipe():
    config = CrosscoderConfig(d_model=16, dict_size=32, k=2)
    cc = Crosscoder(config, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cc.decoder_norms(), torch.full((32, 2), 0.1))
    torch.testing.assert_close(cc.W_enc, cc.W_dec.permute(1, 2, 0))  # the encoder is the decoder's transpose
    assert float(decoder_cosine(cc).abs().max()) < 0.9  # each model's vector drawn on its own
    shared = Crosscoder(CrosscoderConfig(d_model=16, dict_size=32, k=2, same_init_for_all_models=True,
                                         decoder_init_norm=1.0, init_with_transpose=False),
                        generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(decoder_cosine(shared), torch.ones(32, dtype=torch.float64))
    torch.testing.assert_close(shared.decoder_norms(), torch.ones(32, 2))
    assert not torch.allclose(shared.W_enc, shared.W_dec.permute(1, 2, 0))


def test_learning_rate_schedule_and_default_rate():
    config = TrainConfig(steps=100, warmup_steps=10, decay_start=0.8)
    factors = [config.lr_factor(step) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0 and factors[50] == 1.0
    assert factors[80] == 1.0 and factors[90] == pytest.approx(0.5) and factors[99] == pytest.approx(0.05)
    assert TrainConfig(steps=100, warmup_steps=10, decay_start=1.0).lr_factor(99) == 1.0
    assert TrainConfig(steps=1).learning_rate(2**14) == pytest.approx(2e-4)
    assert TrainConfig(steps=1).learning_rate(2**12) == pytest.approx(4e-4)
    assert TrainConfig(steps=1, lr=1e-3).learning_rate(2**12) == 1e-3


def test_batch_topk_with_a_hint_keeps_the_same_latents():
    g = torch.Generator().manual_seed(0)
    scores = torch.relu(torch.randn(64, 128, generator=g))
    exact, smallest = batch_topk_mask(scores, 5)
    assert int(exact.sum()) == 64 * 5 and float(smallest) == float(scores[exact].min())
    for hint in (0.5 * float(smallest), 0.99 * float(smallest), 2.0 * float(smallest), None, 0.0):
        mask, low = batch_topk_mask(scores, 5, hint=hint)
        assert torch.equal(mask, exact) and float(low) == float(smallest)


def test_convergence_summary_and_warning(planted, tmp_path):
    config = TrainConfig(steps=40, batch_size=64, lr=3e-3, warmup_steps=5, threshold_start_step=10,
                         dead_tokens=64 * 5, log_every=10, settle_window=0.5, decay_start=1.0)
    trainer = CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=64, k=K), config, planted, tmp_path)
    trainer.train(progress=False)
    summary = json.loads((tmp_path / files.TRAIN_SUMMARY).read_text())
    assert summary == json.loads(json.dumps(trainer.summary))
    assert summary["window_start_step"] == 20 and 0 <= summary["class_changed"] <= 1
    assert {"fve_base", "fve_ft", "dead_latents", "counts", "settled", "verdict"} <= set(summary)
    log = [json.loads(line) for line in (tmp_path / files.TRAIN_LOG).read_text().splitlines()]
    assert log[0]["class_changed"] is None and all(row["class_changed"] is not None for row in log[1:])
    assert {"recon_base", "recon_ft", "fve_base", "fve_ft", "l0", "dead_latents", "threshold", "lr"} <= set(log[-1])

    # Latents whose class changed over the window: not settled, and the analysis says so.
    trainer.window_summary = None  # compare the end of training with the (edited) start of the window
    trainer.delta_window = torch.zeros_like(trainer._delta())  # every latent base-only at the window's start
    unsettled = trainer.convergence_summary()
    assert unsettled["class_changed"] > 0.5 and not unsettled["settled"] and "train longer" in unsettled["verdict"]
    assert "had not settled" in convergence_warning(unsettled)
    assert convergence_warning({"settled": True}) is None
    assert "cannot tell" in convergence_warning(None)
    # The same relative norms, directions and FVE at the start of the window and at the end: settled.
    trainer.delta_window, trainer.sketch_window = trainer._delta(), trainer._sketch()
    trainer.fve_window = {key: value for key, value in trainer.last_row.items() if key.startswith("fve_")}
    settled = trainer.convergence_summary()
    assert settled["class_changed"] == 0.0 and settled["relative_norm_moved"] == 0.0 and settled["settled"]
    assert settled["direction_turned"] == 0.0 and settled["fve_gain"] == {"base": 0.0, "ft": 0.0}
    # With a decay, the window ends where the decay starts: 100 steps, decay from 80, window 40%: 40-80.
    decaying = CrosscoderTrainer(CrosscoderConfig(d_model=D, dict_size=64, k=K),
                                 TrainConfig(steps=100, warmup_steps=5, decay_start=0.8), planted)
    assert (decaying.window_start, decaying.window_end) == (40, 80)
    # Directions that turned, or FVE still rising: not settled.
    trainer.sketch_window = torch.randn_like(trainer.sketch_window)
    assert not trainer.convergence_summary()["settled"]
    trainer.sketch_window = trainer._sketch()
    trainer.fve_window["fve_ft"] -= 0.06
    assert not trainer.convergence_summary()["settled"]


def test_class_ids_match_classify():
    delta = torch.tensor([0.0, 0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.9, 1.0, math.nan], dtype=torch.float64)
    assert classify(delta) == ["base_only", "base_only", "other", "shared", "shared", "shared", "other",
                               "ft_only", "ft_only", "other"]
    assert class_ids(delta).tolist() == [0, 0, 3, 1, 1, 1, 3, 2, 2, 3]


def test_promoted_tokens_and_latent_table():
    vocab, d = 50, 64
    g = torch.Generator().manual_seed(0)
    unembed = {name: torch.nn.functional.normalize(torch.randn(vocab, d, generator=g), dim=-1)
               for name in ("base", "ft")}
    decoder = torch.zeros(3, 2, d)
    decoder[1, 1] = unembed["ft"][7]  # latent 1 writes token 7's output direction into the fine-tuned model
    decoder[1, 0] = -unembed["base"][3]  # and suppresses token 3 in the base model
    out = promoted_tokens(decoder, unembed, [1, 2], lambda t: f"tok{t}", top=10, chunk=1)
    assert out[1]["ft"]["promoted"][0][0] == "tok7" and out[1]["base"]["suppressed"][0][0] == "tok3"
    assert len(out[1]["ft"]["promoted"]) == len(out[2]["base"]["suppressed"]) == 10
    summary = {"top_latents": {"ft_only": [{"latent": 1, "delta": 0.97, "cosine": 0.1, "frequency": 0.02,
                                            "nu_reconstruction": 0.05, "nu_error": 0.01, "artefact": False}],
                               "base_only": [], "shared": [{"latent": 2, "delta": 0.5, "cosine": 0.99,
                                                            "frequency": 0.3}]}}
    table = latent_table(summary, out, {1: ["a|b", "c"]})
    assert table["ft_only"][0]["promoted"]["ft"][0] == "tok7" and table["ft_only"][0]["firing_tokens"] == ["a|b", "c"]
    markdown = latent_table_markdown(table)
    assert "## Leaning to the fine-tuned model (1)" in markdown and "`a\\|b`" in markdown
    assert "| 1 | 0.97 | 0.1 | 0.05 | 0.01 | 0.02 |" in markdown


def test_activations_by_hub_id_are_read_from_the_cache_offline(tmp_path):
    """The study's activations as a Hub dataset: an id in the Hugging Face cache trains offline, like a folder."""
    import os
    import subprocess
    import sys

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--someone--finqa-activations"
    _write_shards(repo / "snapshots" / commit, rows=300)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    result = subprocess.run([sys.executable, "scripts/train_crosscoder.py", "someone/finqa-activations", "--output_dir",
                             str(tmp_path / "o"), "--steps", "3", "--batch_size", "100", "--dict_size", "16",
                             "--k", "2", "--no_progress"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "o" / "crosscoder.pt").is_file()

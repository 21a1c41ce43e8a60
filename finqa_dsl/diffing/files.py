"""File names of the diffing pipeline: activation folders, training folders, analysis folders."""

MANIFEST = "manifest.json"  # activation folder: shard list and metadata
CROSSCODER = "crosscoder.pt"  # training folder: the final crosscoder (config + weights)
CHECKPOINT = "checkpoint.pt"  # training folder: model, optimiser, schedule, step, dead-latent counters
TRAIN_LOG = "train_log.jsonl"  # training folder: one row per logging interval
TRAIN_CONFIG = "train_config.json"  # training folder: the crosscoder and training configuration
TRAIN_SUMMARY = "train_summary.json"  # training folder: convergence (class changes, dead latents, FVE)
SUMMARY = "summary.json"  # analysis folder: counts, thresholds, latent scaling, top latents
DELTA_PLOT = "relative_norm_histogram.png"
COSINE_PLOT = "shared_cosine_histogram.png"
SCALING_PLOT = "latent_scaling.png"
PROMOTED_TOKENS = "promoted_tokens.json"  # analysis folder: tokens each table latent promotes/suppresses
LATENT_TABLE_JSON = "latent_table.json"  # analysis folder: top latents leaning to each model
LATENT_TABLE_MD = "latent_table.md"
DASHBOARD = "dashboard.html"  # analysis folder: top contexts, histograms and statistics of chosen latents

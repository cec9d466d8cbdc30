"""Training: typed YAML configs, reproducible splits, phased training, checkpoints and bundles.

A run is: discover images → per-file records and duplicate groups → a saved split → canonical
crops cached once on disk → the config's phases (head on cached frozen features, fine-tuning,
training from scratch, or a closed-form fit) with early stopping on validation AUROC → the best
weights saved as a model bundle with test metrics, a JSONL history and a history plot.

Modules, in the order a run uses them: `config` (the typed YAML settings, torch-free), `runs`
(run folders: continued, replaced or refused), `crops` (images to split and cached face crops),
`augment` and `synthesize` (what training adds to the crops) and `trainer` (the loop and
`train`). `facetell train` reads and checks a config before it imports torch.
"""

"""Training layer (L3): loop, optimizer, schedule, dataloader, checkpoints and metrics. Serves and generates
nothing."""

"""One module per deploy phase, each `apply(ctx, phase)`: probe what it needs, decide, act, record."""

"""CLI command groups, one module per pipeline stage; each has ``register(app)``."""

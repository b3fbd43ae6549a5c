"""Application layer: how pipelines run (executor, runner); depends on the domain only."""

"""Run-state backends: where durable runs are checkpointed."""

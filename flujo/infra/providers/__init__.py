"""Built-in ``StateProvider`` implementations."""

"""Adapters that turn agents of other libraries into flujo steps."""

"""Concrete parts behind the domain protocols; only ``flujo.containers`` wires them."""

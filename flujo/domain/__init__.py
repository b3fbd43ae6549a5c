"""Domain layer: models, protocols, errors and the DSL; imports nothing else of flujo."""

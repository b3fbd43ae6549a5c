"""The executor and the run loop behind the ``Flujo`` facade."""

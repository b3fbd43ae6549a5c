"""The ``flujo`` command line: run pipelines and manage stored runs."""

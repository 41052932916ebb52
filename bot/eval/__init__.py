"""Evaluation of pipeline stages on labelled data (each module: `run(data_dir) -> dict`, `main`)."""

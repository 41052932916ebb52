"""Evaluation of pipeline stages against labelled data (each module: `run(data_dir) -> dict`, `main(argv)`)."""

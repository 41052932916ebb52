"""Training commands for the small learned parts of the pipeline (each module: `main(argv)`)."""

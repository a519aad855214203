"""Training students by transfer from the teacher: config, data streams, engine, checkpoints."""

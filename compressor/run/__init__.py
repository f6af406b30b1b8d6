"""Running a spec: the engine and its components, the loop of a stage, checkpoints and resume, the run directory and
what a run writes into it."""

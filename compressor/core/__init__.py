"""The core: registries and argument schemas, the hook contract, strategies and the context they receive, tasks,
losses, schedules, and the low-level helpers every layer uses. It imports nothing above it."""

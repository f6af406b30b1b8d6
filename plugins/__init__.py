"""Built-in strategy plugins, one file per strategy, loaded through the same entry points as a third party's."""

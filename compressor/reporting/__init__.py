"""Reading finished runs: comparisons, result tables, evaluation outputs and the plugin catalog."""

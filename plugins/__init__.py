"""Built-in strategy plugins, installed as the ``compressor_plugins`` package."""

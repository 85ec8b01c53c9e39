"""Built-in suite files (TOML), found with importlib.resources after any kind of install."""

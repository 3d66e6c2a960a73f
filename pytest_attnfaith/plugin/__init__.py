"""The pytest plugin. ``entry`` is what pytest loads; it imports neither torch nor transformers."""

"""paw_ray: the PaW cascade face-attribute network (Ding et al., AAAI 2018) trained on Ray."""

__version__ = "0.1.0"  # the one version string: pyproject.toml reads it ([tool.setuptools.dynamic])

"""stimgen's version, in one place (the package, the manifest, the report and the CLI read it).
"""
__version__ = "0.1.0"

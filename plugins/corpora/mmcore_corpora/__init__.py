"""mmcore-corpora: loaders for real corpora, read from files the user already has.

Nothing is downloaded at run time. Each loader reads one published layout and, when a file is
missing or malformed, says in one line which path it expected and points to docs/datasets.md.
Registered as the ``corpora`` plugin: ``corpora.handwritten``, ``corpora.iemocap``,
``corpora.msp_improv``, ``corpora.mosi``, ``corpora.mosei``, ``corpora.features``, and the
``mmcore convert`` command.
"""

__version__ = "0.1.0"

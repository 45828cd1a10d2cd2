"""A pytest plugin (``-p picklex_as_pickle``) that makes picklex stand in for ``pickle``.

Loaded before the code under test is imported, it puts picklex's Pickler, Unpickler and
functions into the stdlib ``pickle`` module, as a user swapping in a faster pickle would,
so that third-party suites (joblib's, with loky's process backend) run on picklex.
"""

import pickle

import picklex

for _name in ("Pickler", "Unpickler", "dump", "dumps", "load", "loads"):
    setattr(pickle, _name, getattr(picklex, _name))

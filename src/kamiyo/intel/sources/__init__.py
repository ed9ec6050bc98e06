"""Source adapters, one module each, behind the interface in ``base.py``.

The list of them is ``registry.py``, kept out of this file so that importing one adapter (the
bundle needs two) does not import every adapter's parsing libraries.
"""

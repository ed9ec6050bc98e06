"""The surface-neutral call pipeline and the catalogue of operations.

Every face of KAMIYO (MCP tools, REST, the command line) renders the same catalogue and runs
each call through ``pipeline.execute``: one policy, several faces.
"""

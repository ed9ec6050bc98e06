"""``python -m kamiyo``: how MCP hosts start KAMIYO (``kamiyo install claude-desktop``)."""

import gc

# Importing the command line creates a few hundred thousand objects and next to no garbage,
# yet the collector would pass over them a few hundred times meanwhile. Off while importing;
# then what was imported is frozen out of its sight, so the passes while serving skip it too.
gc.disable()
try:
    from kamiyo.cli import main
finally:
    gc.freeze()
    gc.enable()

main()

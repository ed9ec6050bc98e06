"""One KAMIYO instance for the load benchmark: ``kamiyo serve`` with the enterprise tier raised.

    python -m bench.load_serve --port 8000 --stateless --json-response   # any ``serve`` options

As in ``bench/kamiyo_server.py``, the enterprise tier's limits are raised to 10**9 a minute and
a day in this process only (``kamiyo.tiers`` is not edited): the load's enterprise keys are
identified, counted and metered but never refused, while the other tiers keep their real limits
(the free key's refusals are part of the mix). Then the CLI runs exactly as ``kamiyo serve
--transport http`` with the arguments given, its open-file limit raised by the CLI itself.
"""

import sys

from bench.kamiyo_server import raise_limits


def main() -> None:
    raise_limits()
    from kamiyo.cli import main as cli

    sys.argv = ["kamiyo", "serve", "--transport", "http", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()

"""How the database pools are sized: a module of its own, so the settings can name the default
without importing the engine."""

# Connections a pool keeps open. SQLAlchemy's default (5) is below what one HTTP instance runs
# at once (10 concurrent calls in bench.mcp): every call past it opened a connection (on
# PostgreSQL a TCP connect and a log-in, on SQLite a thread) and closed it again on return.
DEFAULT_POOL_SIZE = 20
# PostgreSQL connections are replaced after this long, so one a firewall or a server's idle
# timeout cut is not kept for ever (a cut one is also caught on use: ``read_retrying``).
POOL_RECYCLE_S = 1800

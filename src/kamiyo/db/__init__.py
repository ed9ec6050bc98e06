"""Storage plumbing shared by every floor: tables, engine, migrations."""

"""Source adapters: each turns one external format into ``IncidentRecord`` values."""

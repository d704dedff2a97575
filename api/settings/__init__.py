"""Settings split by environment: base (shared), local, test, production; all read from env vars."""

"""The one change path (lock, test, save, audit, check), its journal and crash recovery."""

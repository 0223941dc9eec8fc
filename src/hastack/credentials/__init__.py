"""Generated secrets: what a spec needs (pure) and where they are kept (store)."""

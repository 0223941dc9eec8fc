"""What every layer shares and nothing else: the progress callback type, bounded polling."""

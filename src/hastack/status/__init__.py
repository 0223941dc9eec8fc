"""`hastack status`: every host and cluster probed in parallel, judged by pure verdicts."""

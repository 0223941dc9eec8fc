"""Deploy: put a rendered spec on its hosts over SSH and form every cluster, in order."""

"""`python3 -m hastack.agent`: the agent without the CLI's dependencies.

Nodes get only the agent's bundle (see deploy/bundle.py), so this entry
point imports nothing but the agent, pydantic, yaml and PyMySQL.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hastack.agent.config import PATH, load, read_config
from hastack.agent.server import make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack-agent", description=__doc__)
    parser.add_argument("--config", default=PATH, help=f"agent config (default {PATH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = read_config("hastack-agent", args.config, load)
    if cfg is None:
        return 2
    server = make_server(cfg)
    logging.getLogger("hastack.agent").info("serving /galera on %s:%d", cfg.listen, cfg.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

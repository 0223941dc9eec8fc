"""`python3 -m hastack.agent`: the agent without the CLI's dependencies.

Nodes get only the agent's bundle (see deploy/bundle.py), so this entry
point imports nothing but the agent, pydantic, yaml and PyMySQL.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from hastack.agent.config import PATH, load
from hastack.agent.server import make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack-agent", description=__doc__)
    parser.add_argument("--config", default=PATH, help=f"agent config (default {PATH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load(args.config)
    except OSError as exc:
        print(f"hastack-agent: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        # Where and what, never the values: the file holds the monitor password.
        wrong = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}"
                          for e in exc.errors(include_input=False))
        print(f"hastack-agent: cannot use {args.config}: {wrong}", file=sys.stderr)
        return 2
    server = make_server(cfg)
    logging.getLogger("hastack.agent").info("serving /galera on %s:%d", cfg.listen, cfg.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

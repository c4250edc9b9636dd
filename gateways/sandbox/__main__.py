"""`python -m gateways.sandbox --port 8900 --size 500 --seed 42`"""
from __future__ import annotations

import argparse
import json
import logging
from datetime import date

from .core import CREDENTIALS, PROVIDERS, Sandbox, SandboxServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateways.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--size", type=int, default=200, help="invoices per provider")
    parser.add_argument("--sizes", default="{}", help='per provider, JSON: {"xendit": 1000}')
    parser.add_argument("--anchor", type=date.fromisoformat, default=None,
                        help="the date the population is built around (default: today)")
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(message)s")
    sandbox = Sandbox(seed=args.seed, size=args.size, sizes=json.loads(args.sizes), anchor=args.anchor,
                      providers=tuple(p for p in args.providers.split(",") if p))
    server = SandboxServer((args.host, args.port), sandbox)
    print(f"gateway sandbox on {server.url}  (providers under /<provider>; control under /_sandbox/)")
    for name in sandbox.providers:
        print(f"  {name:7s} base_url={server.base_url(name)}  accepts {sorted(CREDENTIALS[name])}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
